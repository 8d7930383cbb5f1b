//! The CUDA backend: the gallery in GPU memory, chi-square for a whole probe
//! batch in one kernel launch. Built with the `cuda` feature; the driver
//! (`libcuda`) and NVRTC are loaded at run time, so a build with the feature
//! runs (on the CPU) where there is no GPU.
//!
//! **Not yet run on a GPU**: written and compiled on a machine without one;
//! `tests/cuda.rs` and `benches/cuda.rs` are what a GPU session runs first.
//!
//! # Where things are
//!
//! * `kernels`: the CUDA C source, the tile shapes a launch picks from and
//!   NVRTC; how the distances are vision's bit for bit.
//! * `device`: the gallery's device buffers (their layout), their growth
//!   and compaction, the uploads, the launches and the downloads.
//! * `mirror`: the host's copy of the gallery's bookkeeping (labels, runs,
//!   templates with overflow) and the top-k from the kernels' run minima.
//! * `tests`: a host transcription of the device side, checked against
//!   vision's arithmetic and the CPU backend (no GPU needed); the GPU's
//!   own checks are `tests/cuda.rs` and `benches/cuda.rs`.
//! * Here: [`CudaBackend`] (opening the device, the [`MatchBackend`]
//!   calls), [`CudaOptions`] and [`DeviceInfo`].

mod device;
mod kernels;
mod mirror;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{CudaContext, DriverError};
use vision::lbph::Layout;
use vision::lbph::{LbphParams, Match, Template};

use self::device::State;
use self::kernels::{compile, Kernels, SHAPES};
use super::{BackendError, MatchBackend};

pub use self::kernels::kernels_ptx;

/// Probes a kernel launch takes at most; bigger batches go in chunks. It
/// also sizes the distance buffer: 8 bytes × this × templates.
pub const MAX_LAUNCH_PROBES: usize = 64;

/// Options of [`CudaBackend::with_options`].
#[derive(Debug, Clone, Default)]
pub struct CudaOptions {
    /// CUDA device ordinal.
    pub device: usize,
    /// Device bytes this backend may use at most (gallery and search
    /// buffers), below what the device has free; `None`: what it has free.
    pub memory_limit: Option<u64>,
}

/// What the bench and the logs show of the device.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub name: String,
    pub ordinal: usize,
    pub compute_capability: (i32, i32),
    pub multiprocessors: i32,
    /// Peak memory clock, kHz (as the driver reports it).
    pub memory_clock_khz: i32,
    pub memory_bus_bits: i32,
    pub total_memory: u64,
}

impl DeviceInfo {
    /// Theoretical peak memory bandwidth, bytes/s: 2 transfers a clock
    /// (DDR) × clock × bus width. Drivers report HBM3 clocks so that this
    /// gives the datasheet figure; treat it as the nominal peak.
    pub fn peak_bandwidth(&self) -> f64 {
        2.0 * self.memory_clock_khz as f64 * 1e3 * self.memory_bus_bits as f64 / 8.0
    }
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (device {}, sm_{}{}, {} SMs, {:.1} GiB, {}-bit bus at {} MHz, peak {:.0} GB/s)",
            self.name,
            self.ordinal,
            self.compute_capability.0,
            self.compute_capability.1,
            self.multiprocessors,
            self.total_memory as f64 / (1u64 << 30) as f64,
            self.memory_bus_bits,
            self.memory_clock_khz / 1000,
            self.peak_bandwidth() / 1e9
        )
    }
}

pub struct CudaBackend {
    layout: Layout,
    info: DeviceInfo,
    state: Mutex<State>,
}

fn dev(e: DriverError) -> BackendError {
    BackendError::Device(format!("CUDA driver: {e}"))
}

fn unavailable(reason: impl Into<String>) -> BackendError {
    BackendError::Unavailable {
        backend: "cuda",
        reason: reason.into(),
    }
}

impl CudaBackend {
    /// The first device, all its free memory.
    pub fn new(params: LbphParams) -> Result<Self, BackendError> {
        Self::with_options(params, CudaOptions::default())
    }

    /// Loads the driver and NVRTC, opens the device and compiles the
    /// kernels. Every failure (no driver, no device, no NVRTC, a layout the
    /// kernels do not support) is an [`BackendError::Unavailable`] naming it.
    pub fn with_options(params: LbphParams, options: CudaOptions) -> Result<Self, BackendError> {
        let layout = Layout::of(&params);
        if !matches!(layout.bins(), 64 | 128 | 256) {
            return Err(unavailable(format!(
                "the CUDA kernels take 6 to 8 neighbours (64–256 bins), not {}",
                layout.neighbors
            )));
        }
        // SAFETY: these only try to open the libraries by name.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(unavailable(
                "no NVIDIA driver library (libcuda.so.1) found: no GPU, or the container was started without the NVIDIA runtime",
            ));
        }
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(unavailable(
                "NVRTC (libnvrtc.so.12) not found: install the CUDA runtime libraries (the -cuda image has them)",
            ));
        }
        // cudarc panics on a missing symbol (a driver older than its
        // bindings): an error, not a crash.
        let opened =
            std::panic::catch_unwind(|| Self::open(layout, options)).unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(unavailable(format!(
                    "the CUDA libraries failed to load: {what}"
                )))
            });
        // Whatever fails while opening means "no usable GPU here" (e.g. PTX
        // newer than the driver): the caller's cue to use the CPU.
        opened.map_err(|e| match e {
            BackendError::Device(m) => unavailable(format!("the GPU did not initialise: {m}")),
            other => other,
        })
    }

    fn open(layout: Layout, options: CudaOptions) -> Result<Self, BackendError> {
        let count = CudaContext::device_count()
            .map_err(|e| unavailable(format!("the driver reports no usable device ({e})")))?;
        if options.device as i32 >= count.max(0) {
            return Err(unavailable(format!(
                "no CUDA device {} (the driver sees {count})",
                options.device
            )));
        }
        let ctx = CudaContext::new(options.device).map_err(|e| {
            unavailable(format!("device {} did not initialise: {e}", options.device))
        })?;
        let attr = |a| ctx.attribute(a).map_err(dev);
        let info = DeviceInfo {
            name: ctx.name().map_err(dev)?,
            ordinal: options.device,
            compute_capability: ctx.compute_capability().map_err(dev)?,
            multiprocessors: attr(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            memory_clock_khz: attr(Attr::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)?,
            memory_bus_bits: attr(Attr::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)?,
            total_memory: ctx.total_mem().map_err(dev)? as u64,
        };
        let ptx = compile(layout, info.compute_capability)?;
        let module = ctx.load_module(ptx).map_err(dev)?;
        let f = |name: &str| module.load_function(name).map_err(dev);
        let kernels = Kernels {
            chi2: [f(SHAPES[0].name)?, f(SHAPES[1].name)?, f(SHAPES[2].name)?],
            run_min: f("run_min")?,
        };
        let state = State::new(ctx, kernels, layout.histogram_len(), options.memory_limit)?;
        Ok(Self {
            layout,
            info,
            state: Mutex::new(state),
        })
    }

    pub fn device_info(&self) -> &DeviceInfo {
        &self.info
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, BackendError> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &state.broken {
            Some(why) => Err(BackendError::Device(why.clone())),
            None => Ok(state),
        }
    }

    fn check(&self, templates: &[Template]) -> Result<(), BackendError> {
        match templates.iter().find(|t| t.layout() != self.layout) {
            Some(bad) => Err(BackendError::LayoutMismatch {
                expected: self.layout,
                found: bad.layout(),
            }),
            None => Ok(()),
        }
    }
}

impl CudaBackend {
    fn update_label_inner(
        &self,
        label: i32,
        templates: Vec<Template>,
        replace: bool,
    ) -> Result<(), BackendError> {
        self.check(&templates)?;
        let len = self.layout.histogram_len();
        let mut s = self.lock()?;
        let n = s.m.labels.len();
        let removing = if replace {
            s.m.labels.iter().filter(|&&l| l == label).count()
        } else {
            0
        };
        // Room first (the only step that may be refused), so that a refused
        // update changes nothing.
        let needed = (n - removing + templates.len()).max(n);
        s.reserve(len, n, needed)?;
        let applied = (|| {
            let mut from = n;
            if replace && removing > 0 {
                s.remove(len, label)?;
                from = 0;
            }
            s.append(len, label, templates)?;
            s.refresh(from)
        })();
        if let Err(e) = &applied {
            s.broken = Some(format!("an earlier update failed half-way: {e}"));
        }
        applied
    }

    fn remove_label_inner(&self, label: i32) {
        let len = self.layout.histogram_len();
        let Ok(mut s) = self.lock() else { return };
        let removed = s
            .remove(len, label)
            .and_then(|r| if r > 0 { s.refresh(0) } else { Ok(()) });
        if let Err(e) = removed {
            tracing::error!(error = %e, "CUDA backend: removal failed; the backend refuses work from now on");
            s.broken = Some(format!("an earlier removal failed: {e}"));
        }
    }

    fn search_batch_inner(
        &self,
        probes: &[Template],
        k: usize,
    ) -> Result<Vec<Vec<Match>>, BackendError> {
        self.check(probes)?;
        let mut s = self.lock()?;
        if k == 0 || s.m.labels.is_empty() {
            return Ok(vec![Vec::new(); probes.len()]);
        }
        let mut out = Vec::with_capacity(probes.len());
        for chunk in probes.chunks(MAX_LAUNCH_PROBES) {
            let refs: Vec<&Template> = chunk.iter().collect();
            out.extend(s.search_chunk(self.layout, &refs, k)?);
        }
        Ok(out)
    }

    fn distances_to_label_inner(
        &self,
        probes: &[Template],
        label: i32,
    ) -> Result<Vec<Option<f64>>, BackendError> {
        self.check(probes)?;
        let len = self.layout.histogram_len();
        let mut s = self.lock()?;
        let mine: Vec<i32> = (0..s.m.labels.len())
            .filter(|&i| s.m.labels[i] == label)
            .map(|i| i as i32)
            .collect();
        if mine.is_empty() {
            return Ok(vec![None; probes.len()]);
        }
        let mut out = Vec::with_capacity(probes.len());
        for chunk in probes.chunks(MAX_LAUNCH_PROBES) {
            let refs: Vec<&Template> = chunk.iter().collect();
            let n = s.launch_chi2(len, &refs, Some(&mine))?;
            let dist = s
                .stream
                .clone_dtoh(
                    &s.dist
                        .as_ref()
                        .expect("launched")
                        .slice
                        .slice(..refs.len() * n),
                )
                .map_err(dev)?;
            let host: Vec<Vec<usize>> = refs
                .iter()
                .map(|p| s.m.host_pairs(p, mine.iter().map(|&i| i as usize)))
                .collect();
            let fetched = s.fetch(len, host.iter().flatten().copied())?;
            for (q, probe) in refs.iter().enumerate() {
                let row = &dist[q * n..(q + 1) * n];
                out.push(s.m.label_min(self.layout, probe, &mine, row, &host[q], &fetched));
            }
        }
        Ok(out)
    }
}

impl CudaBackend {
    /// Runs `f`, turning a panic inside the CUDA libraries (cudarc panics
    /// on a driver symbol it cannot find) into a GPU failure and refusing
    /// work from then on.
    fn guarded<T>(&self, f: impl FnOnce() -> Result<T, BackendError>) -> Result<T, BackendError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
            let why = "a CUDA call panicked".to_string();
            self.state.lock().unwrap_or_else(|p| p.into_inner()).broken = Some(why.clone());
            Err(BackendError::Device(why))
        })
    }
}

impl MatchBackend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn update_label(
        &self,
        label: i32,
        templates: Vec<Template>,
        replace: bool,
    ) -> Result<(), BackendError> {
        self.guarded(|| self.update_label_inner(label, templates, replace))
    }

    fn remove_label(&self, label: i32) {
        let _ = self.guarded(|| {
            self.remove_label_inner(label);
            Ok(())
        });
    }

    fn search_batch(&self, probes: &[Template], k: usize) -> Result<Vec<Vec<Match>>, BackendError> {
        self.guarded(|| self.search_batch_inner(probes, k))
    }

    fn distances_to_label(
        &self,
        probes: &[Template],
        label: i32,
    ) -> Result<Vec<Option<f64>>, BackendError> {
        self.guarded(|| self.distances_to_label_inner(probes, label))
    }

    fn template_count(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .m
            .labels
            .len()
    }
}

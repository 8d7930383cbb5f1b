//! The CUDA backend: the gallery in GPU memory, chi-square for a whole probe
//! batch in one kernel launch. Built with the `cuda` feature; the driver
//! (`libcuda`) and NVRTC are loaded at run time, so a build with the feature
//! runs (on the CPU) where there is no GPU.
//!
//! **Not yet run on a GPU**: written and compiled on a machine without one;
//! `tests/cuda.rs` and `benches/cuda.rs` are what a GPU session runs first.
//!
//! # Layout
//!
//! The gallery is one device buffer of `capacity × histogram_len` bytes in
//! vision's compact form (one `u8` count a bin, 8 × 8 cells × 256 bins =
//! 16 KiB a template, in enrolment order), plus one `u32` a template: its
//! cell pixel count, or 0 when the template has overflow entries (a count of
//! 255 or more, which the byte saturates). The host keeps a mirror of the
//! labels, the cell sizes and the (rare) templates with overflow, in full.
//! The buffer grows by half when full and is compacted on removal.
//!
//! # Distances, bit for bit
//!
//! For a probe and a template of the same cell size `n` without overflow,
//! vision computes `(2/n) Σ (x−y)² / max(x+y, 1)` over the byte counts, with
//! this arithmetic: per cell, 16 `f32` lane accumulators (lane `l` sums bins
//! `l, l+16, l+32, …` in that order, each term one correctly rounded
//! division), the lanes summed in `f64` in order, the cells summed in `f64`,
//! then `× (2.0 / n)`. The kernel does exactly these operations in exactly
//! this order (`__fdiv_rn`, `__fadd_rn`, `__dadd_rn`: no contraction, no
//! fast math), so its distances are the CPU's to the last bit, and labels
//! and tie-breaks follow. Pairs outside that case (different cell sizes,
//! overflow on either side, an empty cell) get `+inf` from the kernel and
//! are scored on the host with vision's own `chi_square` (OpenCV's float
//! path), from the host copy (overflow) or from the template's bytes
//! fetched from the device (different cell sizes). Kiosk crops are all
//! 92 × 112, so in service this never happens.
//!
//! # Kernels
//!
//! `chi2_*`: one thread block per tile of `TT` templates × `PT` probes; for
//! each cell the block stages the tile's cell slices (templates and probes)
//! in shared memory, transposed so that a thread reads a lane's bins as
//! 32-bit words, and each thread scores an `RT × RP` register tile of pairs.
//! Tiles need not divide the gallery or the batch: loads past the end are
//! zeros and their results are not written. Three shapes: 64 × 32 for
//! batches of 24 and more, 128 × 8 for 4 to 23 probes, 128 × 1 for fewer.
//! Batches above 64 probes go in chunks of 64.
//!
//! `run_min`: the minimum (first index on ties) over each run of consecutive
//! templates of one label, per probe; enrolment appends a person's
//! templates together, so runs are about as many as people.
//!
//! # Top-k
//!
//! On the host: the run minima come back (`probes × runs`), are folded into
//! each label's best `(distance, index)` with the host-scored pairs, and
//! the `k` best labels are sorted by distance, then index: vision's
//! collector, so ties go to the earlier template as in OpenCV.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use rayon::prelude::*;
use vision::lbph::distance::chi_square;
use vision::lbph::template::{Layout, TemplateRef};
use vision::lbph::{LbphParams, Match, Template};

use super::{BackendError, MatchBackend};

/// Probes a kernel launch takes at most; bigger batches go in chunks. It
/// also sizes the distance buffer: 8 bytes × this × templates.
pub const MAX_LAUNCH_PROBES: usize = 64;

/// Device memory kept free for the driver, the kernels and other users.
const HEADROOM: u64 = 64 << 20;

const KERNELS: &str = r#"
// BINS and CELLS are defined before this text by the host.
#define LANES 16
#define J (BINS / LANES)          // bins of one lane in a cell
#define W (J / 4)                 // 32-bit words of one lane
#define ROW (LANES * W + 1)       // words of one staged cell slice (+1: no bank conflicts)
#define TLEN ((size_t)BINS * CELLS)

// Copies cell `c` of `count` histograms into shared memory, transposed: lane
// l's bins l, l+16, l+32, ... become consecutive bytes. Rows past `valid` are
// zeros.
template <int ROWS>
__device__ __forceinline__ void stage(unsigned* __restrict__ dst, const unsigned char* __restrict__ base,
                                      const int* __restrict__ index, int use_index, int first, int valid, int c) {
    unsigned char* bytes = reinterpret_cast<unsigned char*>(dst);
    for (int i = threadIdx.x; i < ROWS * (BINS / 4); i += blockDim.x) {
        int r = i / (BINS / 4), word = i % (BINS / 4);
        unsigned v = 0;
        int g = first + r;
        if (g < valid) {
            size_t t = use_index ? (size_t)index[g] : (size_t)g;
            v = reinterpret_cast<const unsigned*>(base + t * TLEN + (size_t)c * BINS)[word];
        }
        #pragma unroll
        for (int k = 0; k < 4; ++k) {
            int bin = 4 * word + k;
            int lane = bin % LANES, j = bin / LANES;
            bytes[(r * ROW + lane * W) * 4 + j] = (unsigned char)(v >> (8 * k));
        }
    }
}

// Distances of probes [p0, p0+PT) to templates [t0, t0+TT) of the launch.
// out[p * n + t] = (2/n_p) * chi-square for same-cell-size pairs without
// overflow (cells[] == pcells[] != 0), +inf for the others (host-scored).
template <int TT, int PT, int RT, int RP>
__device__ __forceinline__ void chi2_tile(const unsigned char* __restrict__ gallery, const unsigned* __restrict__ cells,
                                          const int* __restrict__ index, int use_index, int n,
                                          const unsigned char* __restrict__ probes, const unsigned* __restrict__ pcells,
                                          int p_count, double* __restrict__ out) {
    __shared__ unsigned s_t[TT * ROW];
    __shared__ unsigned s_p[PT * ROW];
    const int TG = TT / RT, PG = PT / RP;
    const int tx = threadIdx.x % TG, ty = threadIdx.x / TG;
    const int t0 = blockIdx.x * TT, p0 = blockIdx.y * PT;

    double total[RT][RP];
    #pragma unroll
    for (int i = 0; i < RT; ++i)
        #pragma unroll
        for (int j = 0; j < RP; ++j) total[i][j] = 0.0;

    for (int c = 0; c < CELLS; ++c) {
        __syncthreads();
        stage<TT>(s_t, gallery, index, use_index, t0, n, c);
        stage<PT>(s_p, probes, nullptr, 0, p0, p_count, c);
        __syncthreads();
        double cell[RT][RP];
        #pragma unroll
        for (int i = 0; i < RT; ++i)
            #pragma unroll
            for (int j = 0; j < RP; ++j) cell[i][j] = 0.0;
        for (int lane = 0; lane < LANES; ++lane) {
            float acc[RT][RP];
            #pragma unroll
            for (int i = 0; i < RT; ++i)
                #pragma unroll
                for (int j = 0; j < RP; ++j) acc[i][j] = 0.0f;
            #pragma unroll
            for (int w = 0; w < W; ++w) {
                unsigned tw[RT], pw[RP];
                #pragma unroll
                for (int i = 0; i < RT; ++i) tw[i] = s_t[(tx + i * TG) * ROW + lane * W + w];
                #pragma unroll
                for (int j = 0; j < RP; ++j) pw[j] = s_p[(ty + j * PG) * ROW + lane * W + w];
                #pragma unroll
                for (int k = 0; k < 4; ++k) {
                    float x[RT], y[RP];
                    #pragma unroll
                    for (int i = 0; i < RT; ++i) x[i] = (float)((tw[i] >> (8 * k)) & 0xffu);
                    #pragma unroll
                    for (int j = 0; j < RP; ++j) y[j] = (float)((pw[j] >> (8 * k)) & 0xffu);
                    #pragma unroll
                    for (int i = 0; i < RT; ++i)
                        #pragma unroll
                        for (int j = 0; j < RP; ++j) {
                            float d = __fsub_rn(x[i], y[j]);
                            float s = fmaxf(__fadd_rn(x[i], y[j]), 1.0f);
                            acc[i][j] = __fadd_rn(acc[i][j], __fdiv_rn(__fmul_rn(d, d), s));
                        }
                }
            }
            #pragma unroll
            for (int i = 0; i < RT; ++i)
                #pragma unroll
                for (int j = 0; j < RP; ++j) cell[i][j] = __dadd_rn(cell[i][j], (double)acc[i][j]);
        }
        #pragma unroll
        for (int i = 0; i < RT; ++i)
            #pragma unroll
            for (int j = 0; j < RP; ++j) total[i][j] = __dadd_rn(total[i][j], cell[i][j]);
    }

    #pragma unroll
    for (int i = 0; i < RT; ++i) {
        int t = t0 + tx + i * TG;
        if (t >= n) continue;
        unsigned tc = cells[use_index ? index[t] : t];
        #pragma unroll
        for (int j = 0; j < RP; ++j) {
            int p = p0 + ty + j * PG;
            if (p >= p_count) continue;
            unsigned pc = pcells[p];
            double d = __longlong_as_double(0x7ff0000000000000LL);  // +inf: scored on the host
            if (pc != 0 && tc == pc) d = __dmul_rn(total[i][j], __ddiv_rn(2.0, (double)pc));
            out[(size_t)p * n + t] = d;
        }
    }
}

#define CHI2(NAME, TT, PT, RT, RP)                                                                          \
extern "C" __global__ void __launch_bounds__((TT / RT) * (PT / RP))                                          \
NAME(const unsigned char* gallery, const unsigned* cells, const int* index, int use_index, int n,           \
     const unsigned char* probes, const unsigned* pcells, int p_count, double* out) {                       \
    chi2_tile<TT, PT, RT, RP>(gallery, cells, index, use_index, n, probes, pcells, p_count, out);          \
}
CHI2(chi2_wide, 64, 32, 4, 2)
CHI2(chi2_mid, 128, 8, 2, 2)
CHI2(chi2_one, 128, 1, 1, 1)

// Per probe (blockIdx.y) and run r of templates [starts[r], starts[r+1]):
// the smallest distance and its first index (-1 when all are +inf).
extern "C" __global__ void run_min(const double* __restrict__ dist, int n, const int* __restrict__ starts,
                                   int runs, double* __restrict__ out_d, int* __restrict__ out_i) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= runs) return;
    const double* row = dist + (size_t)blockIdx.y * n;
    double best = __longlong_as_double(0x7ff0000000000000LL);
    int at = -1;
    for (int t = starts[r]; t < starts[r + 1]; ++t) {
        double d = row[t];
        if (d < best) { best = d; at = t; }
    }
    out_d[(size_t)blockIdx.y * runs + r] = best;
    out_i[(size_t)blockIdx.y * runs + r] = at;
}
"#;

/// One kernel shape: templates × probes a block, threads a block.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    templates: usize,
    probes: usize,
    threads: u32,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "chi2_wide",
        templates: 64,
        probes: 32,
        threads: 256,
    },
    Shape {
        name: "chi2_mid",
        templates: 128,
        probes: 8,
        threads: 256,
    },
    Shape {
        name: "chi2_one",
        templates: 128,
        probes: 1,
        threads: 128,
    },
];

fn shape_for(probes: usize) -> usize {
    match probes {
        24.. => 0,
        4..=23 => 1,
        _ => 2,
    }
}

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

struct Kernels {
    chi2: [CudaFunction; 3],
    run_min: CudaFunction,
}

/// A device buffer with room for `cap` elements (at least one: CUDA
/// allocates no empty buffers).
struct Buf<T> {
    slice: CudaSlice<T>,
}

struct State {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    memory_limit: Option<u64>,
    /// Set after a failed operation that could not report it
    /// (`remove_label`): every later call fails, so the fallback switches.
    broken: Option<String>,

    // Device.
    gallery: Buf<u8>,
    capacity: usize,
    cells: Buf<u32>,
    starts: Buf<i32>,
    probes: Option<Buf<u8>>,
    pcells: Option<Buf<u32>>,
    dist: Option<Buf<f64>>,
    run_d: Option<Buf<f64>>,
    run_i: Option<Buf<i32>>,
    index: Option<Buf<i32>>,

    /// The host's side of the gallery.
    m: Mirror,
}

/// The host's mirror of the device gallery, in gallery order, and the
/// bookkeeping that needs no device (kept apart so that it is tested
/// without a GPU, against a host transcription of the kernels).
#[derive(Default)]
struct Mirror {
    labels: Vec<i32>,
    /// Cell pixels, 0 for a template with overflow (as on the device).
    cells_host: Vec<u32>,
    cell_pixels: Vec<u32>,
    overflow: HashMap<usize, Arc<Template>>,
    /// Templates without overflow by cell size.
    by_cell_size: HashMap<u32, usize>,
    /// Runs of one label: starts, then the end (always at least `[0]`).
    runs: Vec<i32>,
    run_label: Vec<u32>,
    /// Labels by dense number, and back.
    dense: Vec<i32>,
    dense_of: HashMap<i32, u32>,
}

fn dev(e: DriverError) -> BackendError {
    BackendError::Device(format!("CUDA driver: {e}"))
}

fn is_oom(e: &DriverError) -> bool {
    e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY
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
        let stream = ctx.default_stream();
        let alloc_u8 = stream
            .alloc_zeros::<u8>(layout.histogram_len())
            .map_err(dev)?;
        let state = State {
            gallery: Buf { slice: alloc_u8 },
            capacity: 1,
            cells: Buf {
                slice: stream.alloc_zeros::<u32>(1).map_err(dev)?,
            },
            starts: Buf {
                slice: stream.alloc_zeros::<i32>(1).map_err(dev)?,
            },
            probes: None,
            pcells: None,
            dist: None,
            run_d: None,
            run_i: None,
            index: None,
            ctx,
            stream,
            kernels,
            memory_limit: options.memory_limit,
            broken: None,
            m: Mirror {
                runs: vec![0],
                ..Mirror::default()
            },
        };
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

/// Compiles the kernels for this layout, for the device's architecture when
/// this NVRTC knows it, else for NVRTC's default (the driver JIT-compiles
/// the PTX for the device).
fn compile(layout: Layout, (major, minor): (i32, i32)) -> Result<Ptx, BackendError> {
    let src = format!(
        "#define BINS {}\n#define CELLS {}\n{KERNELS}",
        layout.bins(),
        layout.cells()
    );
    let opts = |arch: Option<String>| CompileOptions {
        // Exact IEEE arithmetic: the distances must be the CPU's.
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        fmad: Some(false),
        options: arch.into_iter().collect(),
        name: Some("kubevision_chi2.cu".into()),
        ..Default::default()
    };
    compile_ptx_with_opts(
        &src,
        opts(Some(format!("--gpu-architecture=compute_{major}{minor}"))),
    )
    .or_else(|_| compile_ptx_with_opts(&src, opts(None)))
    .map_err(|e| unavailable(format!("NVRTC could not compile the kernels: {e}")))
}

/// The kernels' PTX for `params` and a compute capability, compiled by
/// NVRTC alone (no driver, no GPU): lets a machine without a GPU but with
/// NVRTC check that the kernel source compiles.
pub fn kernels_ptx(
    params: &LbphParams,
    compute_capability: (i32, i32),
) -> Result<String, BackendError> {
    // SAFETY: only tries to open the library by name.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(unavailable("NVRTC (libnvrtc.so.12) not found"));
    }
    let layout = Layout::of(params);
    std::panic::catch_unwind(|| compile(layout, compute_capability))
        .unwrap_or_else(|_| Err(unavailable("NVRTC failed to load")))
        .map(|ptx| ptx.to_src())
}

impl State {
    fn launch_cfg(grid: (u32, u32), threads: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (grid.0, grid.1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    fn free_memory(&self) -> Result<u64, BackendError> {
        let (free, _) = self.ctx.mem_get_info().map_err(dev)?;
        let free = (free as u64).saturating_sub(HEADROOM);
        Ok(match self.memory_limit {
            Some(limit) => free.min(limit.saturating_sub(self.used_bytes())),
            None => free,
        })
    }

    fn used_bytes(&self) -> u64 {
        fn b<T>(x: &Option<Buf<T>>) -> u64 {
            x.as_ref().map_or(0, |b| b.slice.num_bytes() as u64)
        }
        (self.gallery.slice.num_bytes()
            + self.cells.slice.num_bytes()
            + self.starts.slice.num_bytes()) as u64
            + b(&self.probes)
            + b(&self.pcells)
            + b(&self.dist)
            + b(&self.run_d)
            + b(&self.run_i)
            + b(&self.index)
    }

    /// Device bytes a gallery of `cap` templates needs: itself, its cell
    /// sizes, run starts, and the search buffers of a full launch (the
    /// distances, the run minima with at most one run a template, the
    /// probes).
    fn bytes_for(len: usize, cap: usize) -> u64 {
        let p = MAX_LAUNCH_PROBES as u64;
        cap as u64 * (len as u64 + 4 + 4 + p * (8 + 8 + 4)) + p * (len as u64 + 4)
    }

    /// Makes room for `needed` templates, keeping the first `keep`.
    fn reserve(&mut self, len: usize, keep: usize, needed: usize) -> Result<(), BackendError> {
        if needed <= self.capacity {
            return Ok(());
        }
        let available = self.free_memory()?;
        // Growing keeps the old buffer until the copy is done.
        let extra = |cap: usize| Self::bytes_for(len, cap).saturating_sub(Self::bytes_for(len, 0));
        let grown = needed.max(self.capacity + self.capacity / 2).max(64);
        let cap = if extra(grown) <= available {
            grown
        } else {
            needed
        };
        if extra(cap) > available {
            return Err(BackendError::OutOfDeviceMemory {
                templates: needed,
                needed: Self::bytes_for(len, needed),
                available: available + self.used_bytes(),
            });
        }
        let oom = |e: DriverError| {
            if is_oom(&e) {
                BackendError::OutOfDeviceMemory {
                    templates: needed,
                    needed: Self::bytes_for(len, needed),
                    available: available + self.used_bytes(),
                }
            } else {
                dev(e)
            }
        };
        let mut gallery = self.stream.alloc_zeros::<u8>(cap * len).map_err(oom)?;
        if keep > 0 {
            self.stream
                .memcpy_dtod(
                    &self.gallery.slice.slice(..keep * len),
                    &mut gallery.slice_mut(..keep * len),
                )
                .map_err(dev)?;
        }
        let mut cells = self.stream.alloc_zeros::<u32>(cap).map_err(oom)?;
        if keep > 0 {
            self.stream
                .memcpy_dtod(
                    &self.cells.slice.slice(..keep),
                    &mut cells.slice_mut(..keep),
                )
                .map_err(dev)?;
        }
        self.gallery = Buf { slice: gallery };
        self.cells = Buf { slice: cells };
        self.capacity = cap;
        // The search buffers are sized at the next search.
        self.dist = None;
        Ok(())
    }

    /// Moves templates `[src, src + count)` to `dst < src`.
    fn move_left(
        &mut self,
        len: usize,
        src: usize,
        dst: usize,
        count: usize,
    ) -> Result<(), BackendError> {
        let shift = src - dst;
        // Chunks no longer than the shift never overlap their destination.
        let mut done = 0;
        while done < count {
            let n = shift.min(count - done);
            let (from, to) = ((src + done) * len, (dst + done) * len);
            let (mut left, right) = self.gallery.slice.split_at_mut(from);
            self.stream
                .memcpy_dtod(
                    &right.slice(..n * len),
                    &mut left.slice_mut(to..to + n * len),
                )
                .map_err(dev)?;
            done += n;
        }
        Ok(())
    }

    /// Removes the templates of `label`; returns how many there were.
    fn remove(&mut self, len: usize, label: i32) -> Result<usize, BackendError> {
        let (removed, moves) = self.m.remove(label);
        for (src, dst, count) in moves {
            self.move_left(len, src, dst, count)?;
        }
        Ok(removed)
    }

    /// Appends templates of `label` (room already reserved).
    fn append(
        &mut self,
        len: usize,
        label: i32,
        templates: Vec<Template>,
    ) -> Result<(), BackendError> {
        let first = self.m.labels.len();
        let bytes = self.m.append(label, templates);
        if !bytes.is_empty() {
            let end = first * len + bytes.len();
            self.stream
                .memcpy_htod(&bytes, &mut self.gallery.slice.slice_mut(first * len..end))
                .map_err(dev)?;
        }
        Ok(())
    }

    /// Brings the mirror's bookkeeping and the device's cell sizes and run
    /// starts up to date, from template `from` on (see [`Mirror::refresh`]).
    fn refresh(&mut self, from: usize) -> Result<(), BackendError> {
        let n = self.m.labels.len();
        if from < n {
            self.stream
                .memcpy_htod(
                    &self.m.cells_host[from..],
                    &mut self.cells.slice.slice_mut(from..n),
                )
                .map_err(dev)?;
        }
        let first_changed = self.m.refresh(from);
        let r = self.m.runs.len();
        let from_run = if self.starts.slice.len() < r {
            self.starts = Buf {
                slice: self
                    .stream
                    .alloc_zeros::<i32>(r.next_power_of_two())
                    .map_err(dev)?,
            };
            0
        } else {
            first_changed
        };
        self.stream
            .memcpy_htod(
                &self.m.runs[from_run..],
                &mut self.starts.slice.slice_mut(from_run..r),
            )
            .map_err(dev)?;
        Ok(())
    }

    /// `buf` with room for `n` elements (grown by powers of two).
    fn ensure<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        stream: &Arc<CudaStream>,
        buf: &mut Option<Buf<T>>,
        n: usize,
        templates: usize,
        available: u64,
    ) -> Result<(), BackendError> {
        if buf.as_ref().is_some_and(|b| b.slice.len() >= n) {
            return Ok(());
        }
        let bytes = (n * std::mem::size_of::<T>()) as u64;
        let held = buf.as_ref().map_or(0, |b| b.slice.num_bytes() as u64);
        if bytes > available + held {
            return Err(BackendError::OutOfDeviceMemory {
                templates,
                needed: bytes,
                available: available + held,
            });
        }
        *buf = None;
        let cap = n.max(1).next_power_of_two();
        let cap = if (cap * std::mem::size_of::<T>()) as u64 > available {
            n.max(1)
        } else {
            cap
        };
        let slice = stream.alloc_zeros::<T>(cap).map_err(|e| {
            if is_oom(&e) {
                BackendError::OutOfDeviceMemory {
                    templates,
                    needed: (n * std::mem::size_of::<T>()) as u64,
                    available,
                }
            } else {
                dev(e)
            }
        })?;
        *buf = Some(Buf { slice });
        Ok(())
    }

    /// Distances of `probes` to the `n` templates (all, or those listed in
    /// `index`) into `self.dist`, `probes × n`, +inf where the host scores.
    fn launch_chi2(
        &mut self,
        len: usize,
        probes: &[&Template],
        index: Option<&[i32]>,
    ) -> Result<usize, BackendError> {
        let n = index.map_or(self.m.labels.len(), |i| i.len());
        let p = probes.len();
        let available = self.free_memory()?;
        let templates = self.m.labels.len();
        Self::ensure(
            &self.stream,
            &mut self.probes,
            p * len,
            templates,
            available,
        )?;
        Self::ensure(&self.stream, &mut self.pcells, p, templates, available)?;
        Self::ensure(&self.stream, &mut self.dist, p * n, templates, available)?;
        let mut bytes = Vec::with_capacity(p * len);
        let mut pcells = Vec::with_capacity(p);
        for t in probes {
            let r = t.as_ref();
            bytes.extend_from_slice(r.counts);
            pcells.push(if r.overflow.is_empty() {
                r.cell_pixels
            } else {
                0
            });
        }
        let stream = self.stream.clone();
        let probes_dev = &mut self.probes.as_mut().expect("ensured").slice;
        stream
            .memcpy_htod(&bytes, &mut probes_dev.slice_mut(..p * len))
            .map_err(dev)?;
        let pcells_dev = &mut self.pcells.as_mut().expect("ensured").slice;
        stream
            .memcpy_htod(&pcells, &mut pcells_dev.slice_mut(..p))
            .map_err(dev)?;
        let use_index: i32 = index.is_some() as i32;
        if let Some(index) = index {
            Self::ensure(
                &self.stream,
                &mut self.index,
                index.len(),
                templates,
                available,
            )?;
            let index_dev = &mut self.index.as_mut().expect("ensured").slice;
            stream
                .memcpy_htod(index, &mut index_dev.slice_mut(..index.len()))
                .map_err(dev)?;
        } else if self.index.is_none() {
            Self::ensure(&self.stream, &mut self.index, 1, templates, available)?;
        }
        let which = shape_for(p);
        let shape = SHAPES[which];
        let cfg = Self::launch_cfg(
            (
                n.div_ceil(shape.templates) as u32,
                p.div_ceil(shape.probes) as u32,
            ),
            shape.threads,
        );
        let (n_i, p_i) = (n as i32, p as i32);
        let mut launch = stream.launch_builder(&self.kernels.chi2[which]);
        launch
            .arg(&self.gallery.slice)
            .arg(&self.cells.slice)
            .arg(&self.index.as_ref().expect("ensured").slice)
            .arg(&use_index)
            .arg(&n_i)
            .arg(&self.probes.as_ref().expect("ensured").slice)
            .arg(&self.pcells.as_ref().expect("ensured").slice)
            .arg(&p_i)
            .arg(&mut self.dist.as_mut().expect("ensured").slice);
        // SAFETY: the arguments match the kernel's signature; every buffer
        // holds at least what the kernel touches (checked above).
        unsafe { launch.launch(cfg) }.map_err(dev)?;
        Ok(n)
    }

    /// Downloads the histograms of `indices` that have no host copy.
    fn fetch(
        &self,
        len: usize,
        indices: impl Iterator<Item = usize>,
    ) -> Result<HashMap<usize, Vec<u8>>, BackendError> {
        let mut out = HashMap::new();
        for i in indices {
            if self.m.overflow.contains_key(&i) || out.contains_key(&i) {
                continue;
            }
            let v = self
                .stream
                .clone_dtoh(&self.gallery.slice.slice(i * len..(i + 1) * len))
                .map_err(dev)?;
            out.insert(i, v);
        }
        Ok(out)
    }

    fn search_chunk(
        &mut self,
        layout: Layout,
        probes: &[&Template],
        k: usize,
    ) -> Result<Vec<Vec<Match>>, BackendError> {
        let len = layout.histogram_len();
        let n = self.launch_chi2(len, probes, None)?;
        let p = probes.len();
        let runs = self.m.runs.len() - 1;
        let available = self.free_memory()?;
        Self::ensure(&self.stream, &mut self.run_d, p * runs, n, available)?;
        Self::ensure(&self.stream, &mut self.run_i, p * runs, n, available)?;
        let (n_i, runs_i) = (n as i32, runs as i32);
        let stream = self.stream.clone();
        let mut launch = stream.launch_builder(&self.kernels.run_min);
        launch
            .arg(&self.dist.as_ref().expect("ensured").slice)
            .arg(&n_i)
            .arg(&self.starts.slice)
            .arg(&runs_i)
            .arg(&mut self.run_d.as_mut().expect("ensured").slice)
            .arg(&mut self.run_i.as_mut().expect("ensured").slice);
        // SAFETY: as in launch_chi2; `starts` holds runs + 1 entries.
        unsafe { launch.launch(Self::launch_cfg((runs.div_ceil(128) as u32, p as u32), 128)) }
            .map_err(dev)?;
        let run_d = stream
            .clone_dtoh(
                &self
                    .run_d
                    .as_ref()
                    .expect("ensured")
                    .slice
                    .slice(..p * runs),
            )
            .map_err(dev)?;
        let run_i = stream
            .clone_dtoh(
                &self
                    .run_i
                    .as_ref()
                    .expect("ensured")
                    .slice
                    .slice(..p * runs),
            )
            .map_err(dev)?;

        let host: Vec<Vec<usize>> = probes.iter().map(|pr| self.m.host_pairs_fast(pr)).collect();
        let fetched = self.fetch(len, host.iter().flatten().copied())?;
        Ok(self
            .m
            .top_k(layout, probes, k, &run_d, &run_i, &host, &fetched))
    }
}

impl Mirror {
    /// Host distance of a pair the kernel left to the host.
    fn host_distance(
        &self,
        layout: Layout,
        index: usize,
        probe: &Template,
        fetched: &HashMap<usize, Vec<u8>>,
    ) -> f64 {
        let template = match self.overflow.get(&index) {
            Some(t) => t.as_ref().as_ref(),
            None => TemplateRef {
                cell_pixels: self.cell_pixels[index],
                counts: &fetched[&index],
                overflow: &[],
            },
        };
        chi_square(layout, template, probe.as_ref(), f64::INFINITY)
    }

    /// Templates (among `candidates`) the kernel does not score for `probe`.
    fn host_pairs(&self, probe: &Template, candidates: impl Iterator<Item = usize>) -> Vec<usize> {
        let r = probe.as_ref();
        let pc = if r.overflow.is_empty() {
            r.cell_pixels
        } else {
            0
        };
        candidates
            .filter(|&i| pc == 0 || self.cells_host[i] != pc)
            .collect()
    }

    /// Per probe, the `k` best labels from the run minima the kernel gave
    /// (`probes × runs`, index -1 for a run without a kernel-scored
    /// template) and the pairs in `host` scored here: vision's collector,
    /// nearest first, ties to the earlier template.
    #[allow(clippy::too_many_arguments)]
    fn top_k(
        &self,
        layout: Layout,
        probes: &[&Template],
        k: usize,
        run_d: &[f64],
        run_i: &[i32],
        host: &[Vec<usize>],
        fetched: &HashMap<usize, Vec<u8>>,
    ) -> Vec<Vec<Match>> {
        let runs = self.runs.len() - 1;
        (0..probes.len())
            .into_par_iter()
            .map(|q| {
                let mut best = vec![(f64::INFINITY, usize::MAX); self.dense.len()];
                for r in 0..runs {
                    let (d, i) = (run_d[q * runs + r], run_i[q * runs + r]);
                    let slot = &mut best[self.run_label[r] as usize];
                    if i >= 0 && (d, i as usize) < *slot {
                        *slot = (d, i as usize);
                    }
                }
                for &i in &host[q] {
                    let d = self.host_distance(layout, i, probes[q], fetched);
                    let slot = &mut best[self.dense_of(i)];
                    if d < f64::INFINITY && (d, i) < *slot {
                        *slot = (d, i);
                    }
                }
                let mut all: Vec<(f64, usize, i32)> = best
                    .iter()
                    .enumerate()
                    .filter(|(_, (d, _))| *d < f64::INFINITY)
                    .map(|(dense, &(d, i))| (d, i, self.dense[dense]))
                    .collect();
                let by = |a: &(f64, usize, i32), b: &(f64, usize, i32)| {
                    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
                };
                if all.len() > k {
                    all.select_nth_unstable_by(k - 1, by);
                    all.truncate(k);
                }
                all.sort_by(by);
                all.into_iter()
                    .map(|(distance, _, label)| Match { label, distance })
                    .collect()
            })
            .collect()
    }

    /// The smallest distance of one probe to a label's templates `mine`,
    /// from the kernel's row for them and the pairs in `host`.
    fn label_min(
        &self,
        layout: Layout,
        probe: &Template,
        mine: &[i32],
        row: &[f64],
        host: &[usize],
        fetched: &HashMap<usize, Vec<u8>>,
    ) -> Option<f64> {
        let mut d = row.to_vec();
        for &i in host {
            let at = mine
                .iter()
                .position(|&m| m as usize == i)
                .expect("one of the label's");
            d[at] = self.host_distance(layout, i, probe, fetched);
        }
        d.into_iter().min_by(f64::total_cmp)
    }

    /// Appends templates of `label`; returns their histogram bytes for the device.
    fn append(&mut self, label: i32, templates: Vec<Template>) -> Vec<u8> {
        let first = self.labels.len();
        let mut bytes = Vec::new();
        for (k, t) in templates.into_iter().enumerate() {
            let r = t.as_ref();
            bytes.extend_from_slice(r.counts);
            self.labels.push(label);
            self.cell_pixels.push(r.cell_pixels);
            if r.overflow.is_empty() {
                self.cells_host.push(r.cell_pixels);
            } else {
                self.cells_host.push(0);
                self.overflow.insert(first + k, Arc::new(t));
            }
        }
        bytes
    }

    /// Removes the templates of `label`: how many, and the moves
    /// `(from, to, count)` (in templates, `to < from`, in this order) that
    /// compact the device buffer to match. Call [`Mirror::refresh`]`(0)` after.
    fn remove(&mut self, label: i32) -> (usize, Vec<(usize, usize, usize)>) {
        let keep: Vec<bool> = self.labels.iter().map(|&l| l != label).collect();
        let removed = keep.iter().filter(|k| !**k).count();
        if removed == 0 {
            return (0, Vec::new());
        }
        let mut moves = Vec::new();
        let (mut write, mut i) = (0, 0);
        while i < keep.len() {
            if !keep[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i < keep.len() && keep[i] {
                i += 1;
            }
            if start != write {
                moves.push((start, write, i - start));
            }
            write += i - start;
        }
        let mut it = keep.iter();
        self.labels.retain(|_| *it.next().unwrap());
        let mut it = keep.iter();
        self.cell_pixels.retain(|_| *it.next().unwrap());
        let mut it = keep.iter();
        self.cells_host.retain(|_| *it.next().unwrap());
        let mut new_index = Vec::with_capacity(keep.len());
        let mut next = 0usize;
        for &k in &keep {
            new_index.push(next);
            next += k as usize;
        }
        self.overflow = std::mem::take(&mut self.overflow)
            .into_iter()
            .filter(|(i, _)| keep[*i])
            .map(|(i, t)| (new_index[i], t))
            .collect();
        (removed, moves)
    }

    /// Brings runs, dense labels and counts up to date from template `from`
    /// on (0 after a removal: everything is rebuilt; the old length after an
    /// append: only the new part, so that loading a gallery person by person
    /// stays linear). Returns the first entry of `runs` that changed.
    fn refresh(&mut self, from: usize) -> usize {
        let n = self.labels.len();
        if from == 0 {
            self.by_cell_size.clear();
            self.dense_of.clear();
            self.dense.clear();
            self.runs = vec![0];
            self.run_label.clear();
        }
        for &c in &self.cells_host[from..] {
            if c != 0 {
                *self.by_cell_size.entry(c).or_default() += 1;
            }
        }
        // `runs` ends with the old length: drop it, extend, close again.
        self.runs.pop();
        let first_changed = self.runs.len().saturating_sub(1);
        for i in from..n {
            let l = self.labels[i];
            if i == 0 || self.labels[i - 1] != l {
                let next = self.dense_of.len() as u32;
                let d = *self.dense_of.entry(l).or_insert(next);
                if d == next {
                    self.dense.push(l);
                }
                self.runs.push(i as i32);
                self.run_label.push(d);
            }
        }
        self.runs.push(n as i32);
        first_changed
    }

    /// [`Mirror::host_pairs`] over the whole gallery, skipping the scan when
    /// the kernel scored every template.
    fn host_pairs_fast(&self, probe: &Template) -> Vec<usize> {
        let r = probe.as_ref();
        let scored = if r.overflow.is_empty() {
            self.by_cell_size.get(&r.cell_pixels).copied().unwrap_or(0)
        } else {
            0
        };
        if scored == self.labels.len() {
            Vec::new()
        } else {
            self.host_pairs(probe, 0..self.labels.len())
        }
    }

    fn dense_of(&self, index: usize) -> usize {
        // Runs are sorted by start: the run holding `index`.
        let r = self.runs.partition_point(|&s| s as usize <= index) - 1;
        self.run_label[r] as usize
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// A template of `n`-pixel cells with counts spread over a few bins.
    fn template(seed: u64, n: u32) -> Template {
        let layout = Layout::of(&LbphParams::default());
        let mut next = rng(seed);
        let mut counts = vec![0u8; layout.histogram_len()];
        for cell in counts.chunks_mut(layout.bins()) {
            for _ in 0..n {
                let bin = if next().is_multiple_of(4) {
                    next() % 256
                } else {
                    next() % 40
                } as usize;
                cell[bin] += 1;
            }
        }
        let mut bytes = b"KVT1".to_vec();
        bytes.extend([1u8, 8, 8, 8]);
        bytes.extend(n.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(counts);
        Template::from_bytes(&bytes).unwrap()
    }

    /// The kernel's arithmetic and indexing, step for step on the host:
    /// `stage` (the transposition into 32-bit words) and `chi2_tile`'s loops.
    fn as_the_kernel_does(layout: Layout, a: &Template, b: &Template) -> f64 {
        kernel_pair(
            layout,
            a.as_ref().counts,
            b.as_ref().counts,
            b.cell_pixels(),
        )
    }

    /// `chi2_tile` for one (template, probe) pair of byte histograms.
    fn kernel_pair(layout: Layout, a: &[u8], b: &[u8], n: u32) -> f64 {
        let (bins, lanes) = (layout.bins(), 16);
        let (j_len, w_len) = (bins / lanes, bins / lanes / 4);
        let row = lanes * w_len + 1;
        let stage = |t: &[u8], c: usize| {
            let mut words = vec![0u32; row];
            let src = &t[c * bins..(c + 1) * bins];
            for word in 0..bins / 4 {
                let v = u32::from_le_bytes(src[4 * word..4 * word + 4].try_into().unwrap());
                for k in 0..4 {
                    let bin = 4 * word + k;
                    let (lane, j) = (bin % lanes, bin / lanes);
                    let at = (lane * w_len) * 4 + j;
                    let byte = (v >> (8 * k)) & 0xff;
                    words[at / 4] |= byte << (8 * (at % 4));
                }
            }
            words
        };
        assert_eq!(j_len % 4, 0);
        let mut total = 0.0f64;
        for c in 0..layout.cells() {
            let (st, sp) = (stage(a, c), stage(b, c));
            let mut cell = 0.0f64;
            for lane in 0..lanes {
                let mut acc = 0.0f32;
                for w in 0..w_len {
                    let (tw, pw) = (st[lane * w_len + w], sp[lane * w_len + w]);
                    for k in 0..4 {
                        let x = ((tw >> (8 * k)) & 0xff) as f32;
                        let y = ((pw >> (8 * k)) & 0xff) as f32;
                        let d = x - y;
                        acc += d * d / (x + y).max(1.0);
                    }
                }
                cell += acc as f64;
            }
            total += cell;
        }
        total * (2.0 / n as f64)
    }

    #[test]
    fn the_kernels_arithmetic_is_visions_bit_for_bit() {
        let layout = Layout::of(&LbphParams::default());
        for seed in 0..40 {
            let n = [143, 143, 60, 250][seed as usize % 4];
            let (a, b) = (template(seed, n), template(seed + 1000, n));
            let cpu = chi_square(layout, a.as_ref(), b.as_ref(), f64::INFINITY);
            let gpu = as_the_kernel_does(layout, &a, &b);
            assert_eq!(gpu.to_bits(), cpu.to_bits(), "seed {seed}: {gpu} vs {cpu}");
            assert_eq!(as_the_kernel_does(layout, &a, &a), 0.0);
        }
    }

    #[test]
    fn shapes_cover_every_batch_size() {
        for p in 1..=MAX_LAUNCH_PROBES {
            let s = SHAPES[shape_for(p)];
            assert!(s.probes <= MAX_LAUNCH_PROBES && s.templates >= s.probes);
            // Threads = (TT / RT) × (PT / RP) as the CHI2 lines declare.
            let declared = match s.name {
                "chi2_wide" => (64 / 4) * (32 / 2),
                "chi2_mid" => (128 / 2) * (8 / 2),
                _ => 128,
            };
            assert_eq!(s.threads as usize, declared, "{}", s.name);
        }
        assert_eq!(shape_for(1), 2);
        assert_eq!(shape_for(8), 1);
        assert_eq!(shape_for(64), 0);
    }

    /// Where NVRTC is installed (it needs no GPU), the kernel source must
    /// compile for the GPUs we target.
    #[test]
    fn kernels_compile_where_nvrtc_is_present() {
        for cc in [(9, 0), (8, 0)] {
            match kernels_ptx(&LbphParams::default(), cc) {
                Ok(ptx) => {
                    for name in ["chi2_wide", "chi2_mid", "chi2_one", "run_min"] {
                        assert!(
                            ptx.contains(&format!(".entry {name}")),
                            "{name} missing from the PTX"
                        );
                    }
                    assert!(
                        ptx.contains(&format!(".target sm_{}{}", cc.0, cc.1)),
                        "compiled for sm_{}{}",
                        cc.0,
                        cc.1
                    );
                }
                Err(BackendError::Unavailable { reason, .. }) if reason.contains("not found") => {
                    eprintln!("SKIPPED: NVRTC not found ({reason})");
                    return;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The device side, transcribed: the gallery and cell-size buffers,
    /// the run starts as uploaded, `chi2_tile` per pair and `run_min`;
    /// the host side is the backend's own [`Mirror`].
    struct Emulated {
        layout: Layout,
        gallery: Vec<u8>,
        cells: Vec<u32>,
        starts: Vec<i32>,
        m: Mirror,
    }

    impl Emulated {
        fn new() -> Self {
            Self {
                layout: Layout::of(&LbphParams::default()),
                gallery: Vec::new(),
                cells: Vec::new(),
                starts: vec![0],
                m: Mirror {
                    runs: vec![0],
                    ..Mirror::default()
                },
            }
        }

        fn update(&mut self, label: i32, templates: Vec<Template>, replace: bool) {
            let len = self.layout.histogram_len();
            let n = self.m.labels.len();
            let removing = self.m.labels.iter().filter(|&&l| l == label).count();
            let mut from = n;
            if replace && removing > 0 {
                self.remove(label);
                from = 0;
            }
            let first = self.m.labels.len();
            let bytes = self.m.append(label, templates);
            self.gallery
                .resize(self.gallery.len().max((first * len) + bytes.len()), 0);
            self.gallery[first * len..first * len + bytes.len()].copy_from_slice(&bytes);
            self.refresh(from);
        }

        fn remove(&mut self, label: i32) -> usize {
            let len = self.layout.histogram_len();
            let (removed, moves) = self.m.remove(label);
            for (src, dst, count) in moves {
                // State::move_left: chunks no longer than the shift.
                let (shift, mut done) = (src - dst, 0);
                while done < count {
                    let n = shift.min(count - done);
                    let (from, to) = ((src + done) * len, (dst + done) * len);
                    assert!(to + n * len <= from, "overlapping copy");
                    self.gallery.copy_within(from..from + n * len, to);
                    done += n;
                }
            }
            removed
        }

        fn remove_label(&mut self, label: i32) {
            if self.remove(label) > 0 {
                self.refresh(0);
            }
        }

        /// State::refresh: cell sizes from `from`, starts from the first
        /// changed run (all when the buffer must grow).
        fn refresh(&mut self, from: usize) {
            let n = self.m.labels.len();
            self.cells.resize(self.cells.len().max(n), 0);
            self.cells[from..n].copy_from_slice(&self.m.cells_host[from..]);
            let first_changed = self.m.refresh(from);
            let r = self.m.runs.len();
            let from_run = if self.starts.len() < r {
                self.starts = vec![-7; r.next_power_of_two()];
                0
            } else {
                first_changed
            };
            self.starts[from_run..r].copy_from_slice(&self.m.runs[from_run..]);
        }

        fn dist(&self, probes: &[&Template], index: Option<&[i32]>) -> (usize, Vec<f64>) {
            let len = self.layout.histogram_len();
            let n = index.map_or(self.m.labels.len(), |i| i.len());
            let mut out = vec![0.0; probes.len() * n];
            for (p, probe) in probes.iter().enumerate() {
                let r = probe.as_ref();
                let pc = if r.overflow.is_empty() {
                    r.cell_pixels
                } else {
                    0
                };
                for t in 0..n {
                    let g = index.map_or(t, |i| i[t] as usize);
                    out[p * n + t] = if pc != 0 && self.cells[g] == pc {
                        kernel_pair(
                            self.layout,
                            &self.gallery[g * len..(g + 1) * len],
                            r.counts,
                            pc,
                        )
                    } else {
                        f64::INFINITY
                    };
                }
            }
            (n, out)
        }

        fn fetch(&self, indices: impl Iterator<Item = usize>) -> HashMap<usize, Vec<u8>> {
            let len = self.layout.histogram_len();
            indices
                .filter(|i| !self.m.overflow.contains_key(i))
                .map(|i| (i, self.gallery[i * len..(i + 1) * len].to_vec()))
                .collect()
        }

        fn search(&self, probes: &[Template], k: usize) -> Vec<Vec<Match>> {
            if k == 0 || self.m.labels.is_empty() {
                return vec![Vec::new(); probes.len()];
            }
            let probes: Vec<&Template> = probes.iter().collect();
            let (n, dist) = self.dist(&probes, None);
            let runs = self.m.runs.len() - 1;
            let (mut run_d, mut run_i) =
                (vec![0.0; probes.len() * runs], vec![0; probes.len() * runs]);
            for p in 0..probes.len() {
                for r in 0..runs {
                    let (mut best, mut at) = (f64::INFINITY, -1);
                    for t in self.starts[r]..self.starts[r + 1] {
                        let d = dist[p * n + t as usize];
                        if d < best {
                            (best, at) = (d, t);
                        }
                    }
                    (run_d[p * runs + r], run_i[p * runs + r]) = (best, at);
                }
            }
            let host: Vec<Vec<usize>> = probes.iter().map(|p| self.m.host_pairs_fast(p)).collect();
            let fetched = self.fetch(host.iter().flatten().copied());
            self.m
                .top_k(self.layout, &probes, k, &run_d, &run_i, &host, &fetched)
        }

        fn distances_to_label(&self, probes: &[Template], label: i32) -> Vec<Option<f64>> {
            let mine: Vec<i32> = (0..self.m.labels.len())
                .filter(|&i| self.m.labels[i] == label)
                .map(|i| i as i32)
                .collect();
            if mine.is_empty() {
                return vec![None; probes.len()];
            }
            let refs: Vec<&Template> = probes.iter().collect();
            let (n, dist) = self.dist(&refs, Some(&mine));
            refs.iter()
                .enumerate()
                .map(|(q, p)| {
                    let host = self.m.host_pairs(p, mine.iter().map(|&i| i as usize));
                    let fetched = self.fetch(host.iter().copied());
                    self.m.label_min(
                        self.layout,
                        p,
                        &mine,
                        &dist[q * n..(q + 1) * n],
                        &host,
                        &fetched,
                    )
                })
                .collect()
        }
    }

    /// A template from exact counts (overflow for counts of 255 and more).
    fn exact(cell_pixels: u32, counts: &[u32]) -> Template {
        let mut bytes = b"KVT1".to_vec();
        bytes.extend([1u8, 8, 8, 8]);
        bytes.extend(cell_pixels.to_le_bytes());
        let over: Vec<(u32, u32)> = counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c >= 255)
            .map(|(b, &c)| (b as u32, c))
            .collect();
        bytes.extend((over.len() as u32).to_le_bytes());
        bytes.extend(counts.iter().map(|&c| c.min(255) as u8));
        for (b, c) in over {
            bytes.extend(b.to_le_bytes());
            bytes.extend(c.to_le_bytes());
        }
        Template::from_bytes(&bytes).unwrap()
    }

    fn big(seed: u64) -> Template {
        let mut next = rng(seed);
        let mut counts = vec![0u32; 64 * 256];
        for cell in counts.chunks_mut(256) {
            cell[(next() % 256) as usize] += 400;
            for _ in 0..176 {
                cell[(next() % 256) as usize] += 1;
            }
        }
        exact(576, &counts)
    }

    /// Everything but CUDA itself: the mirror's bookkeeping through appends,
    /// replacements and removals, the device compaction's moves, the
    /// incremental uploads, `run_min`, the host-scored pairs and the top-k,
    /// against the CPU backend.
    #[test]
    fn the_bookkeeping_around_the_kernels_gives_the_cpus_answers() {
        use crate::backend::{CpuBackend, MatchBackend};
        let cpu = CpuBackend::new(LbphParams::default());
        let mut emu = Emulated::new();
        let mut seed = 0;
        let mut people = |views: usize, n: u32| {
            (0..views)
                .map(|_| {
                    seed += 1;
                    template(seed, n)
                })
                .collect::<Vec<_>>()
        };
        let mut ops: Vec<(i32, Vec<Template>, bool)> = Vec::new();
        for label in 0..25 {
            ops.push((label, people(1 + label as usize % 4, 143), false));
        }
        ops.push((30, vec![big(1), big(2)], false)); // overflow
        ops.push((31, people(2, 120), false)); // another cell size
        ops.push((3, people(2, 143), false)); // appended later: a second run
        ops.push((5, people(3, 143), true)); // replaced
        ops.push((40, people(1, 143), false));
        ops.push((3, Vec::new(), true)); // replaced with nothing
        ops.push((30, vec![big(3)], false));
        ops.push((31, people(1, 143), true));
        let mut probes = people(12, 143);
        probes.extend([big(1), big(9), template(999, 120)]);
        probes.push(template(5, 143)); // a gallery template itself: distance 0
        let check = |cpu: &CpuBackend, emu: &Emulated, what: &str| {
            for k in [1, 3, 50] {
                assert_eq!(
                    emu.search(&probes, k),
                    cpu.search_batch(&probes, k).unwrap(),
                    "{what}, k {k}"
                );
            }
            for label in [0, 3, 7, 30, 31, 40, 1234] {
                assert_eq!(
                    emu.distances_to_label(&probes, label),
                    cpu.distances_to_label(&probes, label).unwrap(),
                    "{what}, label {label}"
                );
            }
        };
        for (i, (label, templates, replace)) in ops.into_iter().enumerate() {
            cpu.update_label(label, templates.clone(), replace).unwrap();
            emu.update(label, templates, replace);
            assert_eq!(emu.m.labels.len(), cpu.template_count());
            check(&cpu, &emu, &format!("after update {i} (label {label})"));
        }
        for label in [0, 12, 30, 40, 77, 24] {
            cpu.remove_label(label);
            emu.remove_label(label);
            check(&cpu, &emu, &format!("after removing {label}"));
        }
        for label in 0..50 {
            cpu.remove_label(label);
            emu.remove_label(label);
        }
        assert_eq!(emu.m.labels.len(), 0);
        check(&cpu, &emu, "empty");
        cpu.update_label(9, vec![template(5, 143)], false).unwrap();
        emu.update(9, vec![template(5, 143)], false);
        check(&cpu, &emu, "refilled");
    }
}

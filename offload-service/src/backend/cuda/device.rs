//! The device side: the gallery's buffers in GPU memory and what is done
//! with them (growth, compaction, uploads, the launches, downloads).
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

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use vision::lbph::Layout;
use vision::lbph::{Match, Template};

use super::kernels::{shape_for, Kernels, SHAPES};
use super::mirror::Mirror;
use super::{dev, BackendError, MAX_LAUNCH_PROBES};

/// Device memory kept free for the driver, the kernels and other users.
const HEADROOM: u64 = 64 << 20;

/// A device buffer with room for `cap` elements (at least one: CUDA
/// allocates no empty buffers).
pub(super) struct Buf<T> {
    pub(super) slice: CudaSlice<T>,
}

pub(super) struct State {
    ctx: Arc<CudaContext>,
    pub(super) stream: Arc<CudaStream>,
    kernels: Kernels,
    memory_limit: Option<u64>,
    /// Set after a failed operation that could not report it
    /// (`remove_label`): every later call fails, so the fallback switches.
    pub(super) broken: Option<String>,

    // Device.
    gallery: Buf<u8>,
    capacity: usize,
    cells: Buf<u32>,
    starts: Buf<i32>,
    probes: Option<Buf<u8>>,
    pcells: Option<Buf<u32>>,
    pub(super) dist: Option<Buf<f64>>,
    run_d: Option<Buf<f64>>,
    run_i: Option<Buf<i32>>,
    index: Option<Buf<i32>>,

    /// The host's side of the gallery.
    pub(super) m: Mirror,
}

fn is_oom(e: &DriverError) -> bool {
    e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY
}

impl State {
    /// An empty gallery (room for one template) on `ctx`'s default stream.
    pub(super) fn new(
        ctx: Arc<CudaContext>,
        kernels: Kernels,
        len: usize,
        memory_limit: Option<u64>,
    ) -> Result<Self, BackendError> {
        let stream = ctx.default_stream();
        let alloc_u8 = stream.alloc_zeros::<u8>(len).map_err(dev)?;
        Ok(State {
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
            memory_limit,
            broken: None,
            m: Mirror::new(),
        })
    }

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
    pub(super) fn reserve(
        &mut self,
        len: usize,
        keep: usize,
        needed: usize,
    ) -> Result<(), BackendError> {
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
    pub(super) fn remove(&mut self, len: usize, label: i32) -> Result<usize, BackendError> {
        let (removed, moves) = self.m.remove(label);
        for (src, dst, count) in moves {
            self.move_left(len, src, dst, count)?;
        }
        Ok(removed)
    }

    /// Appends templates of `label` (room already reserved).
    pub(super) fn append(
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
    pub(super) fn refresh(&mut self, from: usize) -> Result<(), BackendError> {
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
    pub(super) fn launch_chi2(
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
    pub(super) fn fetch(
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

    pub(super) fn search_chunk(
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

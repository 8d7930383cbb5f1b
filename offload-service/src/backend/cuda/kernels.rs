//! The kernels: their CUDA C source, the tile shapes a launch picks from,
//! and their compilation by NVRTC for the device's layout.
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

use cudarc::driver::CudaFunction;
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use vision::lbph::Layout;
use vision::lbph::LbphParams;

use super::{unavailable, BackendError};

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
pub(super) struct Shape {
    pub(super) name: &'static str,
    pub(super) templates: usize,
    pub(super) probes: usize,
    pub(super) threads: u32,
}

pub(super) const SHAPES: [Shape; 3] = [
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

pub(super) fn shape_for(probes: usize) -> usize {
    match probes {
        24.. => 0,
        4..=23 => 1,
        _ => 2,
    }
}

/// The kernels, loaded from the compiled module.
pub(super) struct Kernels {
    pub(super) chi2: [CudaFunction; 3],
    pub(super) run_min: CudaFunction,
}

/// Compiles the kernels for this layout, for the device's architecture when
/// this NVRTC knows it, else for NVRTC's default (the driver JIT-compiles
/// the PTX for the device).
pub(super) fn compile(layout: Layout, (major, minor): (i32, i32)) -> Result<Ptx, BackendError> {
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

#[cfg(test)]
mod tests {
    use super::super::MAX_LAUNCH_PROBES;
    use super::*;

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
}

//! The CUDA backend's benchmark: a gallery of 100 000 synthetic templates
//! (10 000 people × 10 views, 92 × 112 crops' cell size), batches of 1, 8
//! and 64 probes, beside the CPU backend of the same build. Prints a
//! Markdown table. Without a GPU it says "no CUDA device" and exits 0.
//!
//! ```sh
//! cargo bench -p kubevision-offload --features cuda --bench cuda
//! cargo bench -p kubevision-offload --features cuda --bench cuda -- --templates 20000 --cpu-templates 5000
//! ```
//!
//! Definitions (also printed under the table):
//! * batch latency: wall time of one `search_batch` call (probe upload,
//!   kernels, copy back, host top-k), which is what every probe of the
//!   batch waits; per probe: that divided by the batch size.
//! * throughput: probes per second at the median batch time.
//! * bandwidth: gallery bytes (templates × 16 384) per median batch time,
//!   and its fraction of the device's nominal peak (2 × memory clock × bus
//!   width, from the driver's attributes). A batch reads the gallery at
//!   least once; at large batches the kernel is compute-bound and this is a
//!   lower figure than what the memory system carries.

#[path = "../tests/synthetic/mod.rs"]
mod synthetic;

use std::time::{Duration, Instant};

use kubevision_offload::backend::{BackendError, CpuBackend, CudaBackend, MatchBackend};
use rayon::prelude::*;
use synthetic::{Person, Rng, CROP_CELL_PIXELS};
use vision::lbph::{LbphParams, Template};

const VIEWS: usize = 10;
const BATCHES: [usize; 3] = [1, 8, 64];

struct Args {
    templates: usize,
    cpu_templates: usize,
    seconds: f64,
}

fn args() -> Args {
    let mut a = Args {
        templates: 100_000,
        cpu_templates: usize::MAX,
        seconds: 3.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> f64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match arg.as_str() {
            "--templates" => a.templates = value("--templates") as usize,
            "--cpu-templates" => a.cpu_templates = value("--cpu-templates") as usize,
            "--seconds" => a.seconds = value("--seconds"),
            _ => {} // cargo bench passes --bench
        }
    }
    a.cpu_templates = a.cpu_templates.min(a.templates);
    a
}

struct Stats {
    median: Duration,
    p99: Duration,
    runs: usize,
}

/// Runs `f` (once to warm up) until `seconds` have passed, at least
/// `min_runs` times.
fn measure(seconds: f64, min_runs: usize, mut f: impl FnMut()) -> Stats {
    f();
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < min_runs || start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
        if times.len() >= 10_000 {
            break;
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p99: at(0.99),
        runs: times.len(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let a = args();
    let params = LbphParams::default();
    let gpu = match CudaBackend::new(params) {
        Ok(g) => g,
        Err(BackendError::Unavailable { reason, .. }) => {
            println!("no CUDA device ({reason}): nothing to measure");
            return;
        }
        Err(e) => {
            println!("no CUDA device: {e}");
            return;
        }
    };
    let info = gpu.device_info().clone();
    println!("device: {info}");

    let people = a.templates.div_ceil(VIEWS);
    let t = Instant::now();
    let gallery: Vec<(Vec<Template>, Template)> = (0..people)
        .into_par_iter()
        .map(|i| {
            let mut rng = Rng::new(0xC0DA ^ (i as u64) << 8);
            let person = Person::new(&mut rng);
            let views = VIEWS.min(a.templates - i * VIEWS);
            let templates = (0..views)
                .map(|_| person.view(&mut rng, CROP_CELL_PIXELS))
                .collect();
            (templates, person.view(&mut rng, CROP_CELL_PIXELS))
        })
        .collect();
    println!(
        "made {} templates of {people} people in {:.1} s",
        a.templates,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    for (label, (templates, _)) in gallery.iter().enumerate() {
        gpu.update_label(label as i32, templates.clone(), false)
            .expect("the gallery fits on the GPU");
    }
    println!(
        "loaded the GPU ({} templates, person by person) in {:.2} s",
        gpu.template_count(),
        t.elapsed().as_secs_f64()
    );
    let cpu = CpuBackend::new(params);
    let mut held = 0;
    for (label, (templates, _)) in gallery.iter().enumerate() {
        if held + templates.len() > a.cpu_templates {
            break;
        }
        held += templates.len();
        cpu.update_label(label as i32, templates.clone(), false)
            .unwrap();
    }
    let scale = a.templates as f64 / held.max(1) as f64;

    // Probes: fresh views of people spread over the gallery.
    let mut rng = Rng::new(7);
    let probes: Vec<Template> = (0..256)
        .map(|_| gallery[rng.below(people as u64) as usize].1.clone())
        .collect();

    // Agreement on what both hold (the whole gallery unless --cpu-templates).
    if held == a.templates {
        let g = gpu.search_batch(&probes[..64], 1).unwrap();
        let c = cpu.search_batch(&probes[..64], 1).unwrap();
        let same = g
            .iter()
            .zip(&c)
            .filter(|(g, c)| g[0].label == c[0].label)
            .count();
        let worst = g
            .iter()
            .zip(&c)
            .map(|(g, c)| ((g[0].distance - c[0].distance) / c[0].distance).abs())
            .fold(0.0, f64::max);
        println!("GPU and CPU agree on {same} of 64 nearest labels; largest relative distance difference {worst:e}");
    }

    let bytes = (a.templates * params_len(&params)) as f64;
    let mut rows = Vec::new();
    for batch in BATCHES {
        let mut next = 0;
        let mut take = || {
            let p = &probes[next % 192..next % 192 + batch];
            next += batch;
            p.to_vec()
        };
        let s = measure(a.seconds, 5, || {
            let p = take();
            std::hint::black_box(gpu.search_batch(&p, 1).unwrap());
        });
        let bw = bytes / s.median.as_secs_f64();
        rows.push(format!(
            "| {batch} | GPU | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.1} GB/s ({:.0} %) | {} |",
            a.templates,
            ms(s.median),
            ms(s.p99),
            ms(s.median) / batch as f64,
            ms(s.p99) / batch as f64,
            batch as f64 / s.median.as_secs_f64(),
            bw / 1e9,
            100.0 * bw / info.peak_bandwidth(),
            s.runs
        ));
        let s = measure(a.seconds, 3, || {
            let p = take();
            std::hint::black_box(cpu.search_batch(&p, 1).unwrap());
        });
        let scaled = |d: Duration| ms(d) * scale;
        let note = if held == a.templates {
            String::new()
        } else {
            format!(" (on {held}, × {scale:.1})")
        };
        rows.push(format!(
            "| {batch} | CPU, {} threads | {}{note} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | | {} |",
            rayon::current_num_threads(),
            a.templates,
            scaled(s.median),
            scaled(s.p99),
            scaled(s.median) / batch as f64,
            scaled(s.p99) / batch as f64,
            batch as f64 / (s.median.as_secs_f64() * scale),
            s.runs
        ));
    }

    println!();
    println!("{}, {} templates, top-1:", info.name, a.templates);
    println!();
    println!("| batch | backend | templates | batch median (ms) | batch p99 (ms) | per probe median (ms) | per probe p99 (ms) | probes/s | gallery bytes / batch time (of peak) | runs |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
    println!();
    println!("batch latency = one search_batch call (upload, kernels, copy back, host top-k); per probe = batch latency / batch size.");
    println!(
        "peak bandwidth {:.0} GB/s = 2 × {} MHz × {}-bit bus (driver attributes).",
        info.peak_bandwidth() / 1e9,
        info.memory_clock_khz / 1000,
        info.memory_bus_bits
    );
    if held != a.templates {
        println!("CPU rows: measured on the first {held} templates and scaled × {scale:.1} to {} (linear in the gallery size).", a.templates);
    }
}

fn params_len(params: &LbphParams) -> usize {
    vision::lbph::Layout::of(params).histogram_len()
}

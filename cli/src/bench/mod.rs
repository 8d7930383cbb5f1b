//! `kubevision bench`: ours against the peer, side by side in one run,
//! ending with a Markdown table of medians and ratios.
//!
//! - [`data`]: the ORL faces, augmented into large galleries, and 640 × 480
//!   frames with one face;
//! - [`recognition`]: LBPH training throughput, predict latency, memory,
//!   against OpenCV's `LBPHFaceRecognizer` (with the `oracles` feature);
//! - [`detection`]: our detection + normalisation against OpenCV's
//!   `CascadeClassifier` with the same parameters (with `oracles`);
//! - [`dlib`] (`--recogniser dlib`): the dlib recogniser's costs per face
//!   and per sign-in, and its peak memory, against dlib's own way.

// Every measure runs beside its peer, so without the peers (feature
// `oracles`, Linux) there is nothing to measure: `run` says so.
#[cfg(all(feature = "oracles", target_os = "linux"))]
mod data;
#[cfg(all(feature = "oracles", target_os = "linux"))]
mod detection;
#[cfg(all(feature = "oracles", target_os = "linux"))]
mod dlib;
#[cfg(all(feature = "oracles", target_os = "linux"))]
mod recognition;

use std::path::PathBuf;
use std::process::ExitCode;
#[cfg(all(feature = "oracles", target_os = "linux"))]
use std::time::Duration;

#[cfg(all(feature = "oracles", target_os = "linux"))]
use anyhow::Context;
use clap::Args;
use vision::recogniser::Kind;

#[derive(Args)]
pub struct BenchArgs {
    /// The ORL faces (folders s1 … s40).
    #[arg(long, default_value = "../shared/datasets/orl")]
    orl: PathBuf,
    /// Gallery sizes for the predict measure.
    #[arg(long, value_delimiter = ',', default_value = "200,5000,50000")]
    sizes: Vec<usize>,
    /// Probes per gallery size.
    #[arg(long, default_value_t = 10)]
    probes: usize,
    /// Frames for the detection measure.
    #[arg(long, default_value_t = 60)]
    frames: usize,
    /// Repetitions of the training measure.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Which recogniser to measure: lbph (against OpenCV) or dlib (its costs
    /// per face and per sign-in, and its memory; needs scripts/setup-models).
    #[arg(long, default_value = "lbph")]
    recogniser: Kind,
    /// Internal: measure the dlib recogniser's peak memory in this process
    /// and print it (the bench runs itself with this flag).
    #[arg(long, hide = true)]
    memory_probe: bool,
}

/// One row of the final table.
#[cfg(all(feature = "oracles", target_os = "linux"))]
pub struct Row {
    measure: String,
    ours: f64,
    peer: f64,
    /// Whether a larger value is better (throughput) or worse (latency, memory).
    higher_is_better: bool,
}

#[cfg(all(feature = "oracles", target_os = "linux"))]
impl Row {
    /// How many times better ours is.
    fn ratio(&self) -> f64 {
        if self.higher_is_better {
            self.ours / self.peer
        } else {
            self.peer / self.ours
        }
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    #[cfg(all(feature = "oracles", target_os = "linux"))]
    return compare(args);
    #[cfg(not(all(feature = "oracles", target_os = "linux")))]
    anyhow::bail!(
        "bench --recogniser {} measures ours beside {} itself: build kubevision with `--features oracles` (Linux)",
        args.recogniser,
        match args.recogniser {
            Kind::Lbph => "OpenCV",
            Kind::Dlib => "dlib",
        }
    )
}

#[cfg(all(feature = "oracles", target_os = "linux"))]
fn compare(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let orl = data::Orl::load(&args.orl)?;
    if args.memory_probe {
        return memory_probe(&orl);
    }
    println!(
        "kubevision bench: {} threads, ORL from {}, recogniser {}",
        rayon::current_num_threads(),
        args.orl.display(),
        args.recogniser
    );
    let (rows, peer) = match args.recogniser {
        Kind::Lbph => {
            let mut rows = recognition::run(&orl, &args.sizes, args.probes, args.rounds)?;
            rows.extend(detection::run(&orl, args.frames)?);
            (rows, "OpenCV")
        }
        Kind::Dlib => {
            let size = args.sizes.iter().copied().max().unwrap_or(50_000);
            let (rows, mut budgets) = dlib::run(&orl, args.frames, size)?;
            budgets.push(dlib::Budget {
                measure: "dlib: peak resident memory, models loaded and bursts decided (MB)".into(),
                value: memory_of_probe(args)?,
                target: "≤ 300".into(),
            });
            println!("\n| measure | kubevision | target |\n|---|---:|---:|");
            for b in &budgets {
                println!("| {} | {} | {} |", b.measure, fmt(b.value), b.target);
            }
            (rows, "dlib")
        }
    };
    println!("\n| measure | kubevision | {peer} | ratio |\n|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1}× |",
            r.measure,
            fmt(r.ours),
            fmt(r.peer),
            r.ratio()
        );
    }
    println!("\nratio: how many times better kubevision is (faster, or smaller); medians over repeated runs.");
    Ok(ExitCode::SUCCESS)
}

#[cfg(all(feature = "oracles", target_os = "linux"))]
/// Runs this program again with `--memory-probe`, so that the figure is a
/// process that did only what the kiosk's recognition does.
fn memory_of_probe(args: &BenchArgs) -> anyhow::Result<f64> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "--recogniser", "dlib", "--memory-probe", "--orl"])
        .arg(&args.orl)
        .output()
        .context("running the memory probe")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("peak resident MB: ")?.trim().parse().ok())
        .with_context(|| {
            format!(
                "the memory probe printed no figure: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Loads the models and the cascade, decides a few bursts, prints VmHWM.
#[cfg(all(feature = "oracles", target_os = "linux"))]
fn memory_probe(orl: &data::Orl) -> anyhow::Result<ExitCode> {
    dlib::run(orl, 20, 200)?;
    let mb = dlib::peak_resident_mb().context("no /proc/self/status")?;
    println!("peak resident MB: {mb:.1}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(all(feature = "oracles", target_os = "linux"))]
fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The median of some timings, in milliseconds.
#[cfg(all(feature = "oracles", target_os = "linux"))]
fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

/// Resident memory of this process in bytes (Linux), for memory deltas.
#[cfg(all(feature = "oracles", target_os = "linux"))]
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

//! `kubevision bench`: our LBPH and detection against OpenCV's, side by
//! side in one run, ending with a Markdown table of medians and ratios.
//!
//! - [`data`]: the ORL faces, augmented into large galleries, and 640 × 480
//!   frames with one face;
//! - [`recognition`]: training throughput, predict latency, memory;
//! - [`detection`]: our detection + normalisation against a plain
//!   full-frame `detectMultiScale`.

mod data;
mod detection;
mod recognition;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

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
}

/// One row of the final table.
pub struct Row {
    measure: String,
    ours: f64,
    opencv: f64,
    /// Whether a larger value is better (throughput) or worse (latency, memory).
    higher_is_better: bool,
}

impl Row {
    /// How many times better ours is.
    fn ratio(&self) -> f64 {
        if self.higher_is_better {
            self.ours / self.opencv
        } else {
            self.opencv / self.ours
        }
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let orl = data::Orl::load(&args.orl)?;
    println!(
        "kubevision bench: {} threads, ORL from {}",
        rayon::current_num_threads(),
        args.orl.display()
    );
    let mut rows = recognition::run(&orl, &args.sizes, args.probes, args.rounds)?;
    rows.extend(detection::run(&orl, args.frames)?);

    println!("\n| measure | kubevision | OpenCV | ratio |\n|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1}× |",
            r.measure,
            fmt(r.ours),
            fmt(r.opencv),
            r.ratio()
        );
    }
    println!("\nratio: how many times better kubevision is (faster, or smaller); medians over repeated runs.");
    Ok(ExitCode::SUCCESS)
}

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
fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

/// Resident memory of this process in bytes (Linux), for memory deltas.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

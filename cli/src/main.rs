//! `kubevision`: the command-line tool for plant IT and scripts.
//!
//! - `enroll`: add people's photos to an OpenCV LBPH model file;
//! - `identify`: say who is in each photo;
//! - `evaluate`: accuracy, FAR/FRR curve and the threshold for a target FAR;
//! - `bench`: ours against OpenCV, side by side, as a Markdown table;
//! - `cluster`: the offload service on the plant's cluster (status, deploy, upgrade, remove);
//! - `doctor`: a headless self-test of a line PC.

mod bench;
mod cluster;
mod dataset;
mod doctor;
mod enroll;
mod evaluate;
mod faces;
mod identify;
mod plot;
mod text;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubevision",
    version,
    about = "KubeVision face sign-in: tools for plant IT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add photos to a model. DIR holds one folder per person, named after them.
    Enroll {
        /// The OpenCV LBPH model file (YAML), created or updated.
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        input: InputArgs,
        dir: PathBuf,
    },
    /// Identify the person in each image: one line (or JSON object) per image.
    Identify {
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        input: InputArgs,
        /// Accept distances below this (default: the model's threshold if it
        /// has one, else KubeVision's calibrated default).
        #[arg(long)]
        threshold: Option<f64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Measure accuracy and calibrate the accept threshold on labelled photos.
    Evaluate(evaluate::EvaluateArgs),
    /// Benchmark our LBPH and detection against OpenCV's, or the dlib
    /// recogniser's costs, on the ORL faces.
    Bench(bench::BenchArgs),
    /// Self-test of an installed kiosk: cascade, camera, store, offload, cluster.
    Doctor(doctor::DoctorArgs),
    /// The offload service on the plant's cluster: status, deploy, upgrade, remove.
    Cluster(cluster::ClusterArgs),
}

/// How photos become the recogniser's input.
#[derive(Args, Clone, Copy)]
pub struct InputArgs {
    /// The photos are already face crops: skip detection and hand each one to
    /// the recogniser as it is (only converted to grey), as with OpenCV's LBPH.
    #[arg(long)]
    aligned: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Enroll { model, input, dir } => enroll::run(&model, input, &dir),
        Command::Identify {
            model,
            input,
            threshold,
            json,
            images,
        } => identify::run(&model, input, threshold, json, &images),
        Command::Evaluate(args) => evaluate::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Cluster(args) => cluster::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Paths and names inside the message come from outside.
            eprintln!("kubevision: {}", text::shown(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

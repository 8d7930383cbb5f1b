//! `kubevision-hmi`: the sign-in kiosk.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use eframe::egui;
use kubevision_hmi::app::{Config, KioskApp};
use kubevision_hmi::store::{ChainStatus, Store};

#[derive(Parser)]
#[command(version, about = "KubeVision face + PIN/password sign-in kiosk")]
struct Args {
    /// A normal window instead of the fullscreen kiosk (development).
    #[arg(long)]
    windowed: bool,
    /// Where the store lives (default: the platform's data directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A folder of images or a video file to play as the camera (demos,
    /// training, tests); a video plays at its own frame rate and loops.
    #[arg(long, value_name = "PATH")]
    camera: Option<PathBuf>,
    /// Frames per second for a folder camera, or a video whose file has no frame rate.
    #[arg(long, default_value_t = 10.0)]
    camera_fps: f64,
    /// Check the audit log's hash chain, print the result and exit (1: tampered).
    #[arg(long)]
    verify_audit: bool,
}

fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "KubeVision", "kubevision-hmi").map_or_else(
        || PathBuf::from("kubevision-data"),
        |d| d.data_dir().to_owned(),
    )
}

fn main() -> ExitCode {
    kubevision_hmi::app::PROCESS_START.get_or_init(std::time::Instant::now);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    if args.verify_audit {
        return match Store::open_in_dir(&data_dir).and_then(|s| s.verify_chain()) {
            Ok(ChainStatus::Intact { rows }) => {
                println!("audit log intact: {rows} entries");
                ExitCode::SUCCESS
            }
            Ok(ChainStatus::Broken { seq, reason }) => {
                println!("audit log TAMPERED: first broken entry {seq} ({reason:?})");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("cannot check the audit log: {e}");
                ExitCode::from(2)
            }
        };
    }
    let config = Config {
        data_dir,
        camera: args.camera,
        camera_fps: args.camera_fps,
    };
    let viewport = if args.windowed {
        egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 800.0])
            .with_title("KubeVision")
    } else {
        // No decorations, at the origin, fullscreen; the app also sizes the
        // window to the monitor, which covers the screen without a window manager.
        egui::ViewportBuilder::default()
            .with_title("KubeVision")
            .with_decorations(false)
            .with_position([0.0, 0.0])
            .with_fullscreen(true)
            .with_always_on_top()
    };
    let options = eframe::NativeOptions {
        viewport,
        ..Default::default()
    };
    let kiosk = !args.windowed;
    let result = eframe::run_native(
        "KubeVision",
        options,
        Box::new(move |cc| Ok(Box::new(KioskApp::new(&cc.egui_ctx, config, kiosk)?))),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubevision-hmi: {e}");
            ExitCode::from(2)
        }
    }
}

//! `kubevision-hmi`: the sign-in kiosk.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use eframe::egui;
use kubevision_hmi::app::{Config, KioskApp};
use kubevision_hmi::store::{verify_store, ChainStatus, Secrets, Store};

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
    /// Where the audit key, the PIN pepper and the audit anchor live
    /// (default: `secrets/` in the data directory). Keep it out of backups
    /// and copies of the data directory.
    #[arg(long, value_name = "DIR", env = "KUBEVISION_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
    /// Check the audit log's keyed chain and its anchor, print the result
    /// and exit (0: intact, 1: tampered, 2: no store or no key). Read-only:
    /// creates nothing.
    #[arg(long, conflicts_with = "init_store")]
    verify_audit: bool,
    /// Create or migrate the store and its secrets (as the kiosk does at
    /// start), check the audit log as --verify-audit does, and exit.
    #[arg(long)]
    init_store: bool,
    /// The installation's configuration file (shared with `kubevision
    /// doctor`); a missing file means defaults. Its `[opcua] listen` fixes
    /// the OPC UA server's address over the kiosk's settings.
    #[arg(long, value_name = "FILE", default_value_os_t = kubevision_hmi::store::install::config_file())]
    config: PathBuf,
}

/// What the kiosk reads of the configuration file; the rest is the
/// doctor's, which checks the whole file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct InstallConfig {
    opcua: OpcUaConfig,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct OpcUaConfig {
    listen: Option<String>,
}

fn install_config(path: &std::path::Path) -> Result<InstallConfig, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(InstallConfig::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "KubeVision", "kubevision-hmi").map_or_else(
        || PathBuf::from("kubevision-data"),
        |d| d.data_dir().to_owned(),
    )
}

/// Exit 0: intact (or a store from before the keyed chain whose unkeyed
/// links hold), 1: tampered, 2: no store, no key, unreadable.
fn report(status: Result<ChainStatus, kubevision_hmi::store::StoreError>) -> ExitCode {
    match status {
        Ok(ChainStatus::Intact { rows }) => {
            println!("audit log intact: {rows} entries");
            ExitCode::SUCCESS
        }
        Ok(ChainStatus::Unkeyed { rows }) => {
            println!(
                "audit log intact but not keyed yet: {rows} entries (the kiosk keys it at its next start)"
            );
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
    }
}

fn main() -> ExitCode {
    kubevision_hmi::app::PROCESS_START.get_or_init(std::time::Instant::now);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let secrets_dir = args
        .secrets_dir
        .clone()
        .unwrap_or_else(|| Secrets::default_dir(&data_dir));
    if args.init_store {
        if let Err(e) = Store::open_with_secrets(&data_dir, &secrets_dir) {
            eprintln!("cannot open the store: {e}");
            return ExitCode::from(2);
        }
    }
    if args.verify_audit || args.init_store {
        return report(verify_store(&data_dir, &secrets_dir));
    }
    // A line must not lose its sign-in over a typo in plant IT's file: the
    // kiosk says what is wrong (journal; `kubevision doctor` fails on it)
    // and runs on its own settings.
    let install = install_config(&args.config).unwrap_or_else(|e| {
        eprintln!("kubevision-hmi: ignoring the configuration file {e}");
        InstallConfig::default()
    });
    let config = Config {
        opcua_listen: install.opcua.listen,
        data_dir,
        camera: args.camera,
        camera_fps: args.camera_fps,
        secrets_dir: args.secrets_dir,
        sync: kubevision_hmi::store_worker::SyncPolicy::default(),
        choose_ask: kubevision_hmi::recognition::challenge::random_ask,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kiosk_reads_its_section_of_the_installed_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kubevision.toml");
        // The file as installed, with the doctor's sections beside ours.
        let installed = include_str!("../../installer/linux/kubevision.toml");
        std::fs::write(&file, installed).unwrap();
        assert_eq!(install_config(&file).unwrap().opcua.listen, None);
        // Plant IT sets the address by uncommenting the line.
        let set = installed.replace("# listen = \"0.0.0.0:4840\"", "listen = \"10.1.2.3:4841\"");
        assert_ne!(
            set, installed,
            "the installed file has a commented listen line"
        );
        std::fs::write(&file, set).unwrap();
        assert_eq!(
            install_config(&file).unwrap().opcua.listen.as_deref(),
            Some("10.1.2.3:4841")
        );
        assert!(install_config(&dir.path().join("absent.toml"))
            .unwrap()
            .opcua
            .listen
            .is_none());
        std::fs::write(&file, "[opcua\nlisten = ").unwrap();
        let e = install_config(&file).unwrap_err();
        assert!(e.contains("kubevision.toml"), "{e}");
    }
}

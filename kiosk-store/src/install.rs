//! Where an installation keeps its files: the paths the installers set up
//! (the .deb's `/etc/kubevision` and `/var/lib/kubevision`; the MSI's
//! `ProgramData\KubeVision`), and so the defaults of the kiosk's and
//! `kubevision doctor`'s `--config` and of the doctor's `--data-dir`.

use std::path::PathBuf;

/// The configuration file (`installer/linux/kubevision.toml`, and the MSI's
/// copy of it).
pub fn config_file() -> PathBuf {
    if cfg!(windows) {
        program_data().join("kubevision.toml")
    } else {
        PathBuf::from("/etc/kubevision/kubevision.toml")
    }
}

/// The kiosk's data directory (its store and secrets).
pub fn data_dir() -> PathBuf {
    if cfg!(windows) {
        program_data().join("data")
    } else {
        PathBuf::from("/var/lib/kubevision")
    }
}

/// `KubeVision` under the machine's ProgramData folder: Windows gives every
/// process its path as `%ProgramData%` (FOLDERID_ProgramData, which an
/// image may have moved off `C:`), else the usual `C:\ProgramData`.
fn program_data() -> PathBuf {
    std::env::var_os("ProgramData")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(r"C:\ProgramData"), PathBuf::from)
        .join("KubeVision")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installers_paths() {
        if cfg!(windows) {
            // Wine and Windows both set %ProgramData%.
            let base = PathBuf::from(std::env::var_os("ProgramData").unwrap());
            assert_eq!(config_file(), base.join(r"KubeVision\kubevision.toml"));
            assert_eq!(data_dir(), base.join(r"KubeVision\data"));
        } else {
            assert_eq!(
                config_file(),
                PathBuf::from("/etc/kubevision/kubevision.toml")
            );
            assert_eq!(data_dir(), PathBuf::from("/var/lib/kubevision"));
        }
    }
}

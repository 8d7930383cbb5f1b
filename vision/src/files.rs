//! Files from outside the process: photos and OpenCV model files read in,
//! model files (and the CLI's reports) written out.
//!
//! Whatever a tool is pointed at may be wrong or hostile: a named pipe
//! (reading it waits for a writer forever), a device such as `/dev/zero`
//! (reading it never ends and fills memory), a folder, or a regular file far
//! larger than anything the tools make. [`read_limited`] refuses all of these
//! with an error naming the path, before a byte is read:
//!
//! - the path's type is checked with `stat`;
//! - it is opened without blocking (`O_NONBLOCK`: opening a FIFO would
//!   otherwise wait for a writer) and the type of what was opened is checked
//!   again, since the path may have been swapped in between;
//! - at most the caller's limit is read, even if the file grows meanwhile.
//!
//! Writing is atomic and private. [`write_atomic`] writes a temporary file
//! next to the target, created `0600` on Unix, flushes it to disk and renames
//! it over the target: a reader sees the old file or the new one, never half
//! of one, and a model of people's face templates is readable only by its
//! owner. The temporary file is named `.<target>.kv-tmp-<pid>-<n>` and stays
//! locked (`flock`) while its writer lives. A writer killed with `kill -9`
//! leaves it behind (a plant model's is hundreds of megabytes, hidden by its
//! dot), so every write, and the CLI when it starts, removes the target's
//! leftovers with [`remove_stale_temp_files`]. A leftover is removed when
//! nobody holds its lock *and* either its writer's pid is gone or it has not
//! been written to for [`STALE_AFTER`]. The lock alone proves that no living
//! writer owns the file, except in the instant between a writer creating its
//! file and locking it; the pid (or the age, when the pid was reused or
//! belongs to another pid namespace) closes that gap. Without `flock` (not
//! Unix) only the age counts. Earlier versions named their temporary files
//! `.tmpXXXXXX`; those that hold an LBPH model and are older than
//! [`STALE_AFTER`] are removed too.
//!
//! Folders that the tools create for their output are made with
//! [`create_private_dir_all`]: `0700` on Unix.

use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::Error;

/// The largest photo file [`crate::imageio::load_gray`] reads: 256 MiB.
///
/// A 24-megapixel camera's JPEG is under 20 MiB and even an uncompressed
/// 16-bit RGB PPM of 6 000 × 4 000 pixels is 137 MiB; decoding is bounded
/// separately by the `image` crate's 512 MiB allocation limit.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// The largest OpenCV model file [`crate::lbph::Lbph::load`] reads: 16 GiB.
///
/// A template of the default layout (8 × 8 cells of 256 bins) is 16 384
/// values in the file. Our writer's shortest round-trip floats make it
/// 149 KB for real faces (measured: the ORL model of 400 templates is
/// 59.7 MB). OpenCV writes `%.8e` (14 characters a non-zero value); a
/// kiosk's 92 × 112 crop has at most 143 non-zero bins a cell, which makes
/// at most about 200 KB a template, and 290 KB if every bin of a large
/// `--aligned` photo is non-zero. A plant model of 50 000 templates is
/// therefore 7.5–10 GB (14.5 GB at the very worst); 16 GiB (17.2 GB) holds
/// it in either writer's format and refuses anything absurd before a byte
/// is read. The reader holds the text and its numbers in memory at once:
/// loading the ORL model peaks at 138 MB, about 2.3 times the file.
pub const MAX_MODEL_FILE_BYTES: u64 = 16 << 30;

/// How long a temporary file must have gone unwritten before it is removed
/// even though its writer's pid is alive (pid reuse) or unknown.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// The marker in our temporary files' names: `.<target>.kv-tmp-<pid>-<n>`.
const TEMP_MARKER: &str = ".kv-tmp-";

/// Reads a whole regular file of at most `limit` bytes. `what` names the
/// kind of file in the error ("a photo", "an OpenCV model file").
pub fn read_limited(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, Error> {
    let io = |source: std::io::Error| Error::Io {
        path: path.to_owned(),
        source,
    };
    check_regular(path, &std::fs::metadata(path).map_err(io)?)?;
    let file = open_nonblocking(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    check_regular(path, &meta)?;
    let too_large = |size: u64| Error::TooLarge {
        path: path.to_owned(),
        size,
        limit,
        what,
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(meta.len() as usize)
        .map_err(|_| io(std::io::ErrorKind::OutOfMemory.into()))?;
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

fn check_regular(path: &Path, meta: &Metadata) -> Result<(), Error> {
    if meta.is_file() {
        return Ok(());
    }
    Err(Error::NotAFile {
        path: path.to_owned(),
        kind: kind_of(meta),
    })
}

/// What a non-regular file is, in words.
fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a plain file"
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// Creates `dir` and any missing parents, each readable only by its owner
/// on Unix (`0700`). Existing folders keep their permissions.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `path` atomically and privately (see the module docs): `write`
/// fills a temporary file beside it, which is synced and renamed over `path`.
/// Stale temporary files of earlier writers of `path` are removed first.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), Error> {
    let fail = |source: std::io::Error| Error::Write {
        path: path.to_owned(),
        source,
    };
    let (dir, name) = split(path).ok_or_else(|| {
        fail(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    remove_stale_temp_files(path);
    let (temp_path, file) = create_temp(&dir, &name).map_err(fail)?;
    let result = (|| {
        let mut out = std::io::BufWriter::new(&file);
        write(&mut out)?;
        out.flush()?;
        drop(out);
        file.sync_all()?;
        std::fs::rename(&temp_path, path)?;
        // The rename itself is durable once the folder is synced.
        #[cfg(unix)]
        {
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    drop(file); // releases the lock
    if result.is_err() {
        let _ = std::fs::remove_file(&temp_path);
    }
    result.map_err(fail)
}

/// The folder (`.` for a bare name) and the file name of `path`.
fn split(path: &Path) -> Option<(PathBuf, String)> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some((dir.to_owned(), name))
}

/// Creates and locks `.<name>.kv-tmp-<pid>-<n>` in `dir`, `0600` on Unix.
fn create_temp(dir: &Path, name: &str) -> std::io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}{TEMP_MARKER}{}-{n}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&temp) {
            Ok(file) => {
                lock::try_exclusive(&file);
                return Ok((temp, file));
            }
            // Our own name from an earlier process with this pid: try the next n.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1_000_000 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes the temporary files that killed writers of `target` left in its
/// folder (see the module docs for the rule); returns how many it removed.
/// Errors are ignored: a folder we cannot list or clean is no reason to fail.
pub fn remove_stale_temp_files(target: &Path) -> usize {
    let Some((dir, name)) = split(target) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let ours = format!(".{name}{TEMP_MARKER}");
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let stale = if let Some(rest) = file_name.strip_prefix(&ours) {
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            is_stale_temp(&entry.path(), pid)
        } else if is_legacy_temp_name(&file_name) {
            is_stale_legacy_temp(&entry.path())
        } else {
            false
        };
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn is_stale_temp(path: &Path, pid: Option<u32>) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    let old = idle_for(&meta) >= STALE_AFTER;
    if cfg!(unix) {
        let Ok(file) = File::open(path) else {
            return false;
        };
        // Someone holds the lock: a living writer.
        if !lock::try_exclusive(&file) {
            return false;
        }
        let gone = pid.is_some_and(|p| p != std::process::id() && !lock::pid_alive(p));
        gone || old
    } else {
        old
    }
}

/// `tempfile`'s default names, which versions before this one used.
fn is_legacy_temp_name(name: &str) -> bool {
    name.len() == 10
        && name.starts_with(".tmp")
        && name[4..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A legacy temporary file is ours if it holds the start of an LBPH model.
fn is_stale_legacy_temp(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() || idle_for(&meta) < STALE_AFTER {
        return false;
    }
    let mut head = [0u8; 64];
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let n = file.read(&mut head).unwrap_or(0);
    let head = String::from_utf8_lossy(&head[..n]);
    head.starts_with("%YAML") && head.contains("opencv_lbphfaces:")
}

fn idle_for(meta: &Metadata) -> Duration {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default()
}

#[cfg(unix)]
mod lock {
    use std::fs::File;
    use std::os::fd::AsRawFd;

    /// Takes an exclusive `flock` without waiting; false if another holds one.
    /// The lock goes with the file when it is closed (or its process dies).
    pub fn try_exclusive(file: &File) -> bool {
        // SAFETY: flock on a descriptor this `File` owns; no memory involved.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }

    /// Whether a process with this pid exists (signal 0 only checks).
    pub fn pid_alive(pid: u32) -> bool {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: kill with signal 0 sends nothing.
        if unsafe { libc::kill(pid, 0) } == 0 {
            return true;
        }
        std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

#[cfg(not(unix))]
mod lock {
    pub fn try_exclusive(_: &std::fs::File) -> bool {
        true
    }
    pub fn pid_alive(_: u32) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(path: &Path, limit: u64) -> String {
        read_limited(path, limit, "a photo")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn regular_files_are_read_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_limited(&path, 10, "a photo").unwrap(), b"0123456789");
        let e = err(&path, 9);
        assert!(e.contains("a.bin") && e.contains("limit"), "{e}");
        assert!(err(dir.path(), 100).contains("a folder"));
        assert!(err(&dir.path().join("missing"), 100).contains("cannot read"));
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_pipes_are_refused_without_reading() {
        let e = err(Path::new("/dev/zero"), MAX_IMAGE_FILE_BYTES);
        assert!(
            e.contains("/dev/zero") && e.contains("character device"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Would block forever in `open` or `read` if it were not refused.
            let e = err(&fifo, 100);
            assert!(e.contains("named pipe"), "{e}");
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_are_atomic_private_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yml");
        write_atomic(&path, |w| w.write_all(b"one")).unwrap();
        write_atomic(&path, |w| w.write_all(b"two")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let failed = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.unwrap_err().to_string().contains("disk full"));
        assert_eq!(std::fs::read(&path).unwrap(), b"two", "old file kept");
        assert_eq!(names(dir.path()), ["m.yml"], "no temporary file left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let sub = dir.path().join("a/b");
            create_private_dir_all(&sub).unwrap();
            for d in [dir.path().join("a"), sub] {
                let mode = std::fs::metadata(d).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o700);
            }
        }
    }

    /// What `kill -9` during a write leaves: an unlocked temporary file.
    #[cfg(unix)]
    #[test]
    fn leftovers_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plant.yml");
        // A pid that is not running: a reaped child's.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let leftover = dir.path().join(format!(".plant.yml.kv-tmp-{dead}-0"));
        std::fs::write(&leftover, vec![0u8; 1 << 20]).unwrap();
        // Another target's leftover, an unrelated hidden file and a fresh
        // legacy name that is not a model: all kept.
        let other = dir.path().join(format!(".other.yml.kv-tmp-{dead}-0"));
        std::fs::write(&other, b"x").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"x").unwrap();
        std::fs::write(dir.path().join(".tmpAbC123"), b"not a model").unwrap();
        // An old legacy temporary file holding a model: removed.
        let legacy = dir.path().join(".tmpXyZ789");
        std::fs::write(&legacy, b"%YAML:1.0\n---\nopencv_lbphfaces:\n").unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&legacy)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        // A living writer's file (this process holds its lock): kept even if old.
        let (live, live_file) = create_temp(dir.path(), "plant.yml").unwrap();
        live_file.set_modified(long_ago).unwrap();

        let removed = remove_stale_temp_files(&path);
        let left = names(dir.path());
        assert!(!left.contains(&leftover.file_name().unwrap().to_string_lossy().into_owned()));
        assert!(!left.contains(&".tmpXyZ789".to_owned()));
        assert_eq!(removed, 2, "{left:?}");
        assert!(live.exists(), "a living writer's file is kept");
        for kept in [".hidden", ".tmpAbC123"] {
            assert!(left.contains(&kept.to_owned()), "{left:?}");
        }
        assert!(other.exists());
        drop(live_file);
    }
}

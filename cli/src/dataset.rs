//! Folders of photos: one sub-folder per person, named after them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use vision::imageio::{is_photo, natural_cmp};

/// One person's photos.
pub struct Person {
    pub name: String,
    pub photos: Vec<PathBuf>,
}

/// The people in `dir`, in natural order (s2 before s10), each with their
/// photos in natural order (2.pgm before 10.pgm).
pub fn people(dir: &Path) -> anyhow::Result<Vec<Person>> {
    let mut people = Vec::new();
    for folder in sorted_entries(dir)? {
        if !folder.is_dir() {
            continue;
        }
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let photos = sorted_entries(&folder)?
            .into_iter()
            .filter(|p| p.is_file() && is_photo(p))
            .collect();
        people.push(Person { name, photos });
    }
    if people.is_empty() {
        bail!(
            "{} has no sub-folders: put each person's photos in a folder named after them",
            dir.display()
        );
    }
    Ok(people)
}

fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort_by(|a, b| natural_cmp(a, b));
    Ok(entries)
}

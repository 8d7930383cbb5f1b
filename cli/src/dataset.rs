//! Folders of photos: one sub-folder per person, named after them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// File endings treated as photos.
const PHOTO_ENDINGS: &[&str] = &["png", "jpg", "jpeg", "pgm", "ppm", "pbm", "pnm", "gif", "bmp", "webp"];

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
        let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let photos = sorted_entries(&folder)?.into_iter().filter(|p| is_photo(p)).collect();
        people.push(Person { name, photos });
    }
    if people.is_empty() {
        bail!("{} has no sub-folders: put each person's photos in a folder named after them", dir.display());
    }
    Ok(people)
}

fn is_photo(path: &Path) -> bool {
    path.is_file()
        && path.extension().and_then(|e| e.to_str()).is_some_and(|e| PHOTO_ENDINGS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    Ok(entries)
}

/// Compares strings with runs of digits compared as numbers.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<(String, u64)> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                let mut n = c.to_digit(10).unwrap() as u64;
                while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                    n = n.saturating_mul(10).saturating_add(d as u64);
                    chars.next();
                }
                parts.push((std::mem::take(&mut text), n));
            } else {
                text.push(c);
            }
        }
        parts.push((text, 0));
        parts
    };
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_as_numbers() {
        let mut v = vec!["s10", "s2", "s1", "10.pgm", "9.pgm"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["9.pgm", "10.pgm", "s1", "s2", "s10"]);
    }
}

//! `kubevision enroll`: photos of people into an OpenCV model file.
//!
//! The model is written atomically and readable only by its owner (see
//! [`vision::files`]); a folder for it that does not exist yet is created
//! `0700`, and what an earlier, killed enrolment left behind is removed
//! first. Names and paths in messages are escaped with [`text::shown`].

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use vision::lbph::{Lbph, LbphParams};

use crate::{dataset, faces, text, InputArgs};

pub fn run(model_path: &Path, input: InputArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    vision::files::remove_stale_temp_files(model_path);
    let mut model = if model_path.exists() {
        Lbph::load(model_path).with_context(|| format!("cannot update {}", model_path.display()))?
    } else {
        Lbph::new(LbphParams::default())?
    };
    let people = dataset::people(dir)?;
    let paths: Vec<&Path> = people
        .iter()
        .flat_map(|p| p.photos.iter().map(|p| p.as_path()))
        .collect();
    let results = faces::process_all(&paths, input, model.params())?;

    let mut results = results.into_iter();
    let (mut added, mut skipped, mut enrolled_people) = (0usize, 0usize, 0usize);
    for person in &people {
        let label = label_for(&mut model, &person.name);
        let before = added;
        for (path, result) in person.photos.iter().zip(results.by_ref()) {
            match result {
                Ok(p) => {
                    model.add_template(label, p.template)?;
                    added += 1;
                }
                Err(reason) => {
                    eprintln!("skipped {}: {}", text::path(path), text::shown(&reason));
                    skipped += 1;
                }
            }
        }
        if added > before {
            model.set_label_info(label, person.name.clone());
            enrolled_people += 1;
        } else {
            eprintln!(
                "{}: no usable photo, not enrolled",
                text::shown(&person.name)
            );
        }
    }
    if added == 0 {
        eprintln!(
            "nothing enrolled: {} left unchanged",
            text::path(model_path)
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(dir) = model_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        vision::files::create_private_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    model.save(model_path)?;
    println!(
        "enrolled {added} photos of {enrolled_people} people into {} ({skipped} skipped; {} templates in all)",
        text::path(model_path),
        model.gallery().len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The person's existing label (found by name in the model's label info), or
/// the next free one: OpenCV's labels are integers, names ride along.
fn label_for(model: &mut Lbph, name: &str) -> i32 {
    if let Some((&label, _)) = model.label_infos().iter().find(|(_, n)| *n == name) {
        return label;
    }
    let used = model
        .gallery()
        .labels()
        .iter()
        .chain(model.label_infos().keys())
        .copied()
        .max()
        .unwrap_or(0);
    used + 1
}

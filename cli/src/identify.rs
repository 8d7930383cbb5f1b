//! `kubevision identify`: who is in each image.
//!
//! Plain-text lines show names, paths and reasons through [`text::shown`]:
//! a name with a newline in it cannot forge a line (JSON needs no help).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use vision::lbph::{Lbph, DEFAULT_THRESHOLD};

use crate::{faces, text, InputArgs};

pub fn run(
    model_path: &Path,
    input: InputArgs,
    threshold: Option<f64>,
    as_json: bool,
    images: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    vision::files::remove_stale_temp_files(model_path);
    let model = Lbph::load(model_path)
        .with_context(|| format!("cannot load model {}", model_path.display()))?;
    let threshold = threshold.unwrap_or_else(|| effective_threshold(&model));
    let paths: Vec<&Path> = images.iter().map(|p| p.as_path()).collect();
    let mut processed = 0;
    for (path, result) in images
        .iter()
        .zip(faces::process_all(&paths, input, model.params())?)
    {
        let line = match result {
            Ok(p) => {
                processed += 1;
                let best = model.search(&p.template, 1)?.into_iter().next();
                let name = best.map(|m| model.label_info(m.label).map_or_else(|| m.label.to_string(), str::to_owned));
                let distance = best.map(|m| m.distance);
                let accepted = distance.is_some_and(|d| d < threshold);
                let f = p.face;
                if as_json {
                    json!({"image": path, "label": name, "distance": distance, "accepted": accepted,
                           "face": [f.x, f.y, f.width, f.height]})
                    .to_string()
                } else {
                    let verdict = if accepted { "accepted" } else { "not accepted" };
                    format!(
                        "{}: {} (distance {:.2}, {verdict})",
                        text::path(path),
                        text::shown(name.as_deref().unwrap_or("-")),
                        distance.unwrap_or(f64::NAN)
                    )
                }
            }
            Err(reason) if as_json => {
                json!({"image": path, "label": null, "distance": null, "accepted": false, "face": null, "reason": reason}).to_string()
            }
            Err(reason) => format!(
                "{}: rejected: {}",
                text::path(path),
                text::shown(&reason)
            ),
        };
        println!("{line}");
    }
    Ok(if processed == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The model's own threshold when it has one (OpenCV's default is "none").
pub fn effective_threshold(model: &Lbph) -> f64 {
    match model.params().threshold {
        t if t < f64::MAX => t,
        _ => DEFAULT_THRESHOLD,
    }
}

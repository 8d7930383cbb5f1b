//! `kubevision evaluate`: accuracy, the FAR/FRR curve and a threshold.
//!
//! The CSV and the plot are written atomically and readable only by their
//! owner, like the models; names and paths in messages are escaped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use vision::calibrate::{self, Scores};
use vision::embedding::EmbeddingGallery;
use vision::lbph::{Gallery, Lbph, LbphParams, Template};
use vision::recogniser::Kind;

use crate::faces::AlignmentArg;
use crate::{dataset, faces, plot, text, InputArgs};

#[derive(Args)]
pub struct EvaluateArgs {
    /// Probe against this model; DIR's folders must be named as its people.
    #[arg(long, conflicts_with = "train_per_person")]
    model: Option<PathBuf>,
    /// No model: enroll the first N photos of each person in DIR and probe
    /// with the rest (the ORL protocol is 5).
    #[arg(long)]
    train_per_person: Option<usize>,
    #[command(flatten)]
    input: InputArgs,
    /// The false-accept rate the recommended threshold must not exceed.
    #[arg(long, default_value_t = 0.001)]
    far: f64,
    /// Write the FAR/FRR curve as CSV here.
    #[arg(long)]
    roc: Option<PathBuf>,
    /// Draw the FAR/FRR curve and the score distributions as PNG here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The recogniser to evaluate: lbph (OpenCV's semantics) or dlib (ResNet
    /// embeddings; needs the model files from scripts/setup-models).
    #[arg(long, default_value = "lbph")]
    recogniser: Kind,
    /// dlib only: where the face box for the landmarks comes from.
    #[arg(long, value_enum, default_value_t)]
    alignment: AlignmentArg,
    /// Labelled photos: one folder per person.
    dir: PathBuf,
}

pub fn run(args: &EvaluateArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..1.0).contains(&args.far) {
        bail!("--far must be a fraction between 0 and 1, not {}", args.far);
    }
    let (scores, templates) = match (args.recogniser, &args.model, args.train_per_person) {
        (Kind::Dlib, Some(_), _) => bail!(
            "--model is an OpenCV LBPH model file; with --recogniser dlib use --train-per-person N"
        ),
        (Kind::Lbph, Some(path), _) => lbph_scores(from_model(path, args)?, args)?,
        (Kind::Lbph, None, Some(n)) => lbph_scores(from_split(n, args)?, args)?,
        (Kind::Dlib, None, Some(n)) => dlib_scores(n, args)?,
        (_, None, None) => bail!("say how to get a gallery: --model FILE, or --train-per-person N"),
    };
    let threshold = calibrate::threshold_for_far(&scores, args.far);
    println!("recogniser: {}", args.recogniser);
    report(&scores, templates, args.far, threshold);
    println!(
        "shipped threshold {}: FAR {:.3} %, FRR {:.1} %",
        args.recogniser.default_threshold(),
        100.0 * calibrate::far(&scores, args.recogniser.default_threshold()),
        100.0 * calibrate::frr(&scores, args.recogniser.default_threshold())
    );
    let points = calibrate::roc(&scores, 200);
    if let Some(path) = &args.roc {
        write_csv(path, &points)?;
        println!("FAR/FRR curve written to {}", text::path(path));
    }
    if let Some(path) = &args.plot {
        plot::roc_png(path, &scores, &points, threshold)?;
        println!("plot written to {}", text::path(path));
    }
    Ok(ExitCode::SUCCESS)
}

/// LBPH scores, and the gallery's size.
fn lbph_scores(
    (gallery, probes): (Gallery, Labelled),
    args: &EvaluateArgs,
) -> anyhow::Result<(Scores, usize)> {
    if probes.is_empty() {
        bail!("no usable probe photos in {}", args.dir.display());
    }
    Ok((calibrate::score(&gallery, &probes)?, gallery.len()))
}

/// dlib scores with the first `n` photos of each person enrolled, and the
/// gallery's size.
fn dlib_scores(n: usize, args: &EvaluateArgs) -> anyhow::Result<(Scores, usize)> {
    let (train, probe) = split(n, &args.dir)?;
    let (train, probe) = (borrowed(&train), borrowed(&probe));
    let embed =
        |photos: &[(i32, &Path)]| -> anyhow::Result<Vec<(i32, vision::embedding::Embedding)>> {
            let paths: Vec<&Path> = photos.iter().map(|(_, p)| *p).collect();
            let mut out = Vec::new();
            for ((label, path), result) in photos.iter().zip(faces::embed_all(
                &paths,
                args.alignment.try_into()?,
                args.input.aligned,
            )?) {
                match result {
                    Ok(e) => out.push((*label, e)),
                    Err(reason) => {
                        eprintln!("skipped {}: {}", text::path(path), text::shown(&reason))
                    }
                }
            }
            Ok(out)
        };
    let mut gallery = EmbeddingGallery::new();
    for (label, e) in embed(&train)? {
        gallery.add(label, e);
    }
    let probes = embed(&probe)?;
    if probes.is_empty() {
        bail!("no usable probe photos in {}", args.dir.display());
    }
    Ok((
        calibrate::score_embeddings(&gallery, &probes),
        gallery.len(),
    ))
}

fn report(scores: &Scores, templates: usize, target: f64, threshold: Option<f64>) {
    println!("probes: {}  gallery templates: {templates}", scores.probes);
    println!(
        "rank-1 identification: {:.1} % ({} of {})",
        100.0 * scores.accuracy(),
        scores.correct,
        scores.probes
    );
    println!(
        "genuine scores: {}  impostor scores: {}",
        scores.genuine.len(),
        scores.impostor.len()
    );
    match threshold {
        Some(t) => println!(
            "recommended threshold for FAR ≤ {:.3} %: {t:.3} (FAR {:.3} %, FRR {:.1} %)",
            100.0 * target,
            100.0 * calibrate::far(scores, t),
            100.0 * calibrate::frr(scores, t)
        ),
        None => println!("no impostor scores: enroll at least two people to calibrate"),
    }
}

fn write_csv(path: &Path, points: &[calibrate::RocPoint]) -> anyhow::Result<()> {
    let mut csv = String::from("threshold,far,frr\n");
    for p in points {
        csv.push_str(&format!("{},{},{}\n", p.threshold, p.far, p.frr));
    }
    Ok(vision::files::write_atomic(path, |out| {
        out.write_all(csv.as_bytes())
    })?)
}

type Labelled = Vec<(i32, Template)>;

/// Templates of `photos` (person index → label), skipping unusable ones with a message.
fn templates(
    photos: &[(i32, &Path)],
    input: InputArgs,
    params: &LbphParams,
) -> anyhow::Result<Labelled> {
    let paths: Vec<&Path> = photos.iter().map(|(_, p)| *p).collect();
    let mut out = Vec::new();
    for ((label, path), result) in photos
        .iter()
        .zip(faces::process_all(&paths, input, params)?)
    {
        match result {
            Ok(p) => out.push((*label, p.template)),
            Err(reason) => eprintln!("skipped {}: {}", text::path(path), text::shown(&reason)),
        }
    }
    Ok(out)
}

fn from_model(path: &Path, args: &EvaluateArgs) -> anyhow::Result<(Gallery, Labelled)> {
    vision::files::remove_stale_temp_files(path);
    let model =
        Lbph::load(path).with_context(|| format!("cannot load model {}", path.display()))?;
    let people = dataset::people(&args.dir)?;
    let mut photos = Vec::new();
    for person in &people {
        match model
            .label_infos()
            .iter()
            .find(|(_, name)| **name == person.name)
        {
            Some((&label, _)) => photos.extend(person.photos.iter().map(|p| (label, p.as_path()))),
            None => eprintln!(
                "skipped folder {}: no such person in the model",
                text::shown(&person.name)
            ),
        }
    }
    let probes = templates(&photos, args.input, model.params())?;
    Ok((model.gallery().clone(), probes))
}

/// Labelled photo paths.
type Photos = Vec<(i32, PathBuf)>;

/// The first `n` photos of each person in `dir` to enroll, the rest to
/// probe; labels are the people's positions, from 1.
fn split(n: usize, dir: &Path) -> anyhow::Result<(Photos, Photos)> {
    let people = dataset::people(dir)?;
    let (mut train, mut probe) = (Vec::new(), Vec::new());
    for (i, person) in people.iter().enumerate() {
        let label = i as i32 + 1;
        for (k, photo) in person.photos.iter().enumerate() {
            if k < n {
                train.push((label, photo.clone()))
            } else {
                probe.push((label, photo.clone()))
            }
        }
    }
    Ok((train, probe))
}

fn from_split(n: usize, args: &EvaluateArgs) -> anyhow::Result<(Gallery, Labelled)> {
    let (train, probe) = split(n, &args.dir)?;
    let params = LbphParams::default();
    let mut gallery = Gallery::new(params);
    for (label, t) in templates(&borrowed(&train), args.input, &params)? {
        gallery.add(label, t)?;
    }
    Ok((gallery, templates(&borrowed(&probe), args.input, &params)?))
}

fn borrowed(photos: &[(i32, PathBuf)]) -> Vec<(i32, &Path)> {
    photos.iter().map(|(l, p)| (*l, p.as_path())).collect()
}

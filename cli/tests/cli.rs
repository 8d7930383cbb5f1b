//! The `kubevision` binary as a new user would try it, on the ORL faces.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn orl() -> PathBuf {
    let dir = std::env::var_os("KUBEVISION_ORL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/orl")
        });
    assert!(
        dir.join("s1/1.pgm").is_file(),
        "ORL faces not found at {}",
        dir.display()
    );
    dir
}

fn kubevision(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubevision"))
        .args(args)
        .output()
        .expect("runs")
}

/// A folder of people `s1..=s{people}` with photos `photos` of each, copied from ORL.
fn people(dir: &Path, people: u32, photos: std::ops::RangeInclusive<u32>) -> PathBuf {
    let root = dir.join(format!("people-{people}-{}", photos.start()));
    for person in 1..=people {
        std::fs::create_dir_all(root.join(format!("s{person}"))).unwrap();
        for p in photos.clone() {
            let name = format!("s{person}/{p}.pgm");
            std::fs::copy(orl().join(&name), root.join(&name)).unwrap();
        }
    }
    root
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

#[test]
fn enroll_then_identify_aligned_photos() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("plant.yml");
    let model_s = model.to_str().unwrap();
    let out = kubevision(&[
        "enroll",
        "--model",
        model_s,
        "--aligned",
        people(tmp.path(), 10, 1..=5).to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("enrolled 50 photos of 10 people"));

    let probes: Vec<String> = (1..=10)
        .map(|p| {
            orl()
                .join(format!("s{p}/7.pgm"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut args = vec!["identify", "--model", model_s, "--aligned", "--json"];
    args.extend(probes.iter().map(String::as_str));
    let out = kubevision(&args);
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 10);
    let mut right = 0;
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["image"], probes[i].as_str());
        assert_eq!(line["face"], serde_json::json!([0, 0, 92, 112]));
        assert!(line["distance"].as_f64().unwrap() > 0.0);
        assert!(line["accepted"].is_boolean());
        right += (line["label"] == format!("s{}", i + 1).as_str()) as usize;
    }
    assert!(right >= 9, "{right} of 10 identified");

    // Enrolling more people later keeps the earlier ones' labels.
    let before = std::fs::read_to_string(&model).unwrap();
    let out = kubevision(&[
        "enroll",
        "--model",
        model_s,
        "--aligned",
        people(tmp.path(), 12, 6..=6).to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let after = std::fs::read_to_string(&model).unwrap();
    assert!(after.len() > before.len());
    assert_eq!(
        after.matches("value:\"s1\"").count(),
        1,
        "s1 keeps one label"
    );
    assert!(after.contains("value:\"s12\""));
}

#[test]
fn bad_inputs_are_named_and_do_not_abort_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.yml");
    let model_s = model.to_str().unwrap();
    assert!(kubevision(&[
        "enroll",
        "--model",
        model_s,
        "--aligned",
        people(tmp.path(), 3, 1..=2).to_str().unwrap()
    ])
    .status
    .success());

    let text = tmp.path().join("notes.png");
    std::fs::write(&text, "not a picture").unwrap();
    let empty = tmp.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let missing = tmp.path().join("missing.pgm");
    let good = orl().join("s2/9.pgm");
    let paths = [&text, &empty, &missing, &good].map(|p| p.to_str().unwrap().to_owned());
    let mut args = vec!["identify", "--model", model_s, "--aligned", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let out = kubevision(&args);
    assert!(out.status.success(), "one good image: success");
    let lines = json_lines(&out);
    for line in &lines[..3] {
        assert_eq!(line["label"], Value::Null);
        assert_eq!(line["face"], Value::Null);
        assert_eq!(line["accepted"], false);
        assert!(line["reason"].as_str().unwrap().len() > 5);
    }
    assert!(lines[0]["reason"]
        .as_str()
        .unwrap()
        .contains("not a readable image"));
    assert!(lines[2]["reason"].as_str().unwrap().contains("cannot read"));
    assert_eq!(lines[3]["label"], "s2");

    // Nothing usable at all: non-zero exit.
    let out = kubevision(&[
        "identify",
        "--model",
        model_s,
        "--aligned",
        &paths[0],
        &paths[1],
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("rejected"));
}

#[test]
fn a_failed_enrolment_leaves_the_model_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.yml");
    let model_s = model.to_str().unwrap();
    assert!(kubevision(&[
        "enroll",
        "--model",
        model_s,
        "--aligned",
        people(tmp.path(), 2, 1..=1).to_str().unwrap()
    ])
    .status
    .success());
    let before = std::fs::read(&model).unwrap();

    let junk = tmp.path().join("junk/someone");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("a.png"), "garbage").unwrap();
    let out = kubevision(&[
        "enroll",
        "--model",
        model_s,
        "--aligned",
        junk.parent().unwrap().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a.png"));
    assert_eq!(std::fs::read(&model).unwrap(), before);
    assert_eq!(
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp"))
            .count(),
        0,
        "no temporary file left"
    );
}

#[test]
fn detection_finds_faces_in_camera_sized_frames() {
    let tmp = tempfile::tempdir().unwrap();
    // Enroll by detection from 640×480 frames, then identify a new frame.
    let root = tmp.path().join("frames");
    for person in 1..=4u32 {
        let dir = root.join(format!("s{person}"));
        std::fs::create_dir_all(&dir).unwrap();
        for p in 1..=5u32 {
            frame(person, p).save(dir.join(format!("{p}.png"))).unwrap();
        }
    }
    let model = tmp.path().join("m.yml");
    let out = kubevision(&[
        "enroll",
        "--model",
        model.to_str().unwrap(),
        root.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let probe = tmp.path().join("probe.jpg");
    frame(3, 8).save(&probe).unwrap();
    let blank = tmp.path().join("blank.png");
    image::GrayImage::from_pixel(640, 480, image::Luma([128]))
        .save(&blank)
        .unwrap();
    let out = kubevision(&[
        "identify",
        "--model",
        model.to_str().unwrap(),
        "--json",
        probe.to_str().unwrap(),
        blank.to_str().unwrap(),
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines[0]["label"], "s3");
    let face: Vec<u64> = lines[0]["face"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        face[0] > 150 && face[0] < 350 && face[2] > 100,
        "face box {face:?} around the pasted face"
    );
    assert_eq!(lines[1]["face"], Value::Null);
    assert!(lines[1]["reason"].as_str().unwrap().contains("no face"));
}

/// An ORL face scaled to sign-in size in the middle of a 640 × 480 frame.
fn frame(person: u32, photo: u32) -> image::GrayImage {
    let face = vision::imageio::load_gray(&orl().join(format!("s{person}/{photo}.pgm"))).unwrap();
    let face = image::imageops::resize(&face, 220, 268, image::imageops::FilterType::Triangle);
    let mut frame = image::GrayImage::from_fn(640, 480, |x, y| {
        image::Luma([(90 + (x / 4 + y / 3) % 60) as u8])
    });
    image::imageops::overlay(&mut frame, &face, 210, 100);
    frame
}

#[test]
fn evaluate_reproduces_opencvs_orl_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let (roc, plot) = (tmp.path().join("roc.csv"), tmp.path().join("roc.png"));
    let out = kubevision(&[
        "evaluate",
        "--aligned",
        "--train-per-person",
        "5",
        "--far",
        "0.001",
        "--roc",
        roc.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        orl().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rank-1 identification: 93.0 % (186 of 200)"),
        "{text}"
    );
    let threshold: f64 = text
        .split("FAR ≤ 0.100 %: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (threshold - vision::lbph::DEFAULT_THRESHOLD).abs() < 0.01,
        "the shipped default is this calibration: {threshold}"
    );
    let csv = std::fs::read_to_string(&roc).unwrap();
    assert!(csv.starts_with("threshold,far,frr\n") && csv.lines().count() == 202);
    let png = image::open(&plot).unwrap();
    assert_eq!((png.width(), png.height()), (1000, 600));
}

#[test]
fn evaluate_dlib_reproduces_the_shipped_threshold_and_writes_the_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let roc = tmp.path().join("roc.csv");
    let out = kubevision(&[
        "evaluate",
        "--aligned",
        "--train-per-person",
        "5",
        "--recogniser",
        "dlib",
        "--roc",
        roc.to_str().unwrap(),
        orl().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("recogniser: dlib"), "{text}");
    assert!(
        text.contains("rank-1 identification: 100.0 % (200 of 200)"),
        "{text}"
    );
    let threshold: f64 = text
        .split("FAR ≤ 0.100 %: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The shipped threshold is this calibration rounded down to 0.01.
    assert_eq!(
        (threshold * 100.0).floor() / 100.0,
        vision::embedding::DEFAULT_THRESHOLD,
        "{text}"
    );
    assert!(text.contains("shipped threshold 0.48: FAR 0.0"), "{text}");
    let csv = std::fs::read_to_string(&roc).unwrap();
    assert!(csv.starts_with("threshold,far,frr\n") && csv.lines().count() == 202);
}

#[test]
fn a_recogniser_that_does_not_exist_or_an_lbph_model_for_dlib_is_refused_by_name() {
    let out = kubevision(&[
        "evaluate",
        "--recogniser",
        "resnet",
        "--train-per-person",
        "5",
        "x",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("resnet") && err.contains("lbph or dlib"),
        "{err}"
    );
    let out = kubevision(&[
        "evaluate",
        "--recogniser",
        "dlib",
        "--model",
        "m.yml",
        orl().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--model is an OpenCV LBPH model file"),
        "{err}"
    );
}

//! `kubevision` against hostile files, as an attacker on the plant network
//! or at a line PC would try it (issue 11, "Outside files"). Every command
//! runs under a time limit: a hang fails the test instead of stalling it, and
//! an abort (a signal, no exit code) fails it too.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

/// Runs `kubevision args`; fails the test if it takes longer than a minute.
fn kubevision(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_kubevision"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("kubevision {args:?} hung for a minute");
        }
    }
}

/// The command ended with exit code 1 (a refusal), not by a signal (abort).
fn refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
    stderr
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// A model of `people` ORL people, photos 1–2 each, in `dir`.
fn enrolled(dir: &Path, people: u32) -> PathBuf {
    let photos = dir.join("people");
    for person in 1..=people {
        std::fs::create_dir_all(photos.join(format!("s{person}"))).unwrap();
        for p in 1..=2 {
            let name = format!("s{person}/{p}.pgm");
            std::fs::copy(orl().join(&name), photos.join(&name)).unwrap();
        }
    }
    let model = dir.join("plant.yml");
    let out = kubevision(&[
        "enroll",
        "--model",
        model.to_str().unwrap(),
        "--aligned",
        photos.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    model
}

fn probe() -> String {
    orl().join("s1/7.pgm").to_string_lossy().into_owned()
}

#[test]
fn a_model_of_100_kb_of_brackets_is_refused_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("evil.yml");
    std::fs::write(
        &model,
        format!(
            "%YAML:1.0\n---\nopencv_lbphfaces:\n   histograms: {}",
            "[".repeat(100_000)
        ),
    )
    .unwrap();
    let out = kubevision(&[
        "identify",
        "--model",
        model.to_str().unwrap(),
        "--aligned",
        &probe(),
    ]);
    let err = refused(&out);
    assert!(
        err.contains("evil.yml: line 4: nested more than 32 levels deep"),
        "{err}"
    );
}

#[test]
fn a_model_of_nan_or_infinite_histograms_is_refused_naming_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(enrolled(dir.path(), 2)).unwrap();
    // The third template's first non-zero value, then all of its values.
    let third = good.match_indices("data: [").nth(2).unwrap().0;
    let nonzero = third + good[third..].find("e-").unwrap();
    let start = good[..nonzero].rfind(' ').unwrap() + 1;
    let end = nonzero + good[nonzero..].find(',').unwrap();
    for (value, expect) in [
        (".nan", "template 2: its histogram holds NaN"),
        (".Inf", "template 2: its histogram holds inf"),
        ("-1.5e-2", "template 2: its histogram holds -0.015"),
    ] {
        let evil = dir.path().join("evil.yml");
        std::fs::write(&evil, format!("{}{value}{}", &good[..start], &good[end..])).unwrap();
        let (evil, probe) = (evil.to_str().unwrap(), probe());
        for json in [false, true] {
            let mut args = vec!["identify", "--model", evil, "--aligned", probe.as_str()];
            if json {
                args.push("--json");
            }
            let err = refused(&kubevision(&args));
            assert!(err.contains(expect), "{value}: {err}");
        }
    }
}

#[test]
fn devices_and_fifos_are_refused_not_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    let model = enrolled(dir.path(), 2);
    let fifo_model = dir.path().join("pipe.yml");
    mkfifo(&fifo_model);
    for bad in ["/dev/zero", fifo_model.to_str().unwrap()] {
        let kind = if bad == "/dev/zero" {
            "it is a character device, not a regular file"
        } else {
            "it is a named pipe (FIFO), not a regular file"
        };
        let out = kubevision(&["identify", "--model", bad, "--aligned", &probe()]);
        assert!(refused(&out).contains(kind), "{bad}");
        let out = kubevision(&[
            "evaluate",
            "--model",
            bad,
            "--aligned",
            orl().to_str().unwrap(),
        ]);
        assert!(refused(&out).contains(kind), "{bad}");
        let out = kubevision(&[
            "enroll",
            "--model",
            bad,
            "--aligned",
            dir.path().join("people").to_str().unwrap(),
        ]);
        assert!(refused(&out).contains(kind), "{bad}");
    }

    // Images: each refused with its reason, the good one still identified.
    let fifo_image = dir.path().join("frame.png");
    mkfifo(&fifo_image);
    let out = kubevision(&[
        "identify",
        "--model",
        model.to_str().unwrap(),
        "--aligned",
        "--json",
        "/dev/zero",
        fifo_image.to_str().unwrap(),
        dir.path().to_str().unwrap(),
        &probe(),
    ]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reason = |i: usize| lines[i]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason(0).contains("/dev/zero: it is a character device"),
        "{}",
        reason(0)
    );
    assert!(
        reason(1).contains("frame.png: it is a named pipe (FIFO)"),
        "{}",
        reason(1)
    );
    assert!(reason(2).contains("it is a folder"), "{}", reason(2));
    assert_eq!(lines[3]["label"], "s1");
}

fn hidden_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// A pid that no process has: a child's, after it was reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn what_a_killed_enrolment_left_is_removed_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let model = enrolled(dir.path(), 2);

    // The attack, for real: kill -9 an enrolment of 400 photos while it
    // writes. If the kill lands in the write (most runs), its temporary file
    // is left behind.
    let mut caught = false;
    for _ in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubevision"))
            .args(["enroll", "--model", model.to_str().unwrap(), "--aligned"])
            .arg(orl())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if hidden_files(dir.path())
                .iter()
                .any(|n| n.contains(".kv-tmp-"))
            {
                child.kill().unwrap(); // SIGKILL
                caught = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill();
        child.wait().unwrap();
        if caught {
            break;
        }
    }
    eprintln!("kill -9 landed while the model was being written: {caught}");
    // And the same as a planted leftover (of a writer with a dead pid),
    // so the test does not depend on the kill's timing.
    let planted = dir
        .path()
        .join(format!(".plant.yml.kv-tmp-{}-0", dead_pid()));
    std::fs::write(&planted, vec![b'x'; 1 << 20]).unwrap();
    assert!(!hidden_files(dir.path()).is_empty());

    // The next start (a read-only identify) removes it.
    let out = kubevision(&[
        "identify",
        "--model",
        model.to_str().unwrap(),
        "--aligned",
        &probe(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        hidden_files(dir.path()),
        Vec::<String>::new(),
        "killed: {caught}"
    );
}

#[test]
fn models_and_their_folders_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let model = enrolled(dir.path(), 2);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&model), 0o600);

    // A folder the tool creates for the model: 0700.
    let nested = dir.path().join("new/models/plant.yml");
    let out = kubevision(&[
        "enroll",
        "--model",
        nested.to_str().unwrap(),
        "--aligned",
        dir.path().join("people").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&nested), 0o600);
    assert_eq!(mode(&dir.path().join("new")), 0o700);
    assert_eq!(mode(&dir.path().join("new/models")), 0o700);

    // The evaluation's CSV and plot too.
    let (roc, plot) = (dir.path().join("roc.csv"), dir.path().join("roc.png"));
    let out = kubevision(&[
        "evaluate",
        "--aligned",
        "--train-per-person",
        "1",
        "--roc",
        roc.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        dir.path().join("people").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!((mode(&roc), mode(&plot)), (0o600, 0o600));
}

#[test]
fn a_name_with_a_newline_cannot_forge_output_lines() {
    let dir = tempfile::tempdir().unwrap();
    let forged = "Eve\ns9.pgm: Mallory (distance 0.00, accepted)";
    let people = dir.path().join("people");
    for (name, person) in [(forged, 1), ("s2", 2)] {
        std::fs::create_dir_all(people.join(name)).unwrap();
        for p in 1..=2 {
            std::fs::copy(
                orl().join(format!("s{person}/{p}.pgm")),
                people.join(name).join(format!("{p}.pgm")),
            )
            .unwrap();
        }
    }
    // A person whose only photo is unusable, with a newline too.
    let nobody = people.join("Nobody\nenrolled 99 photos");
    std::fs::create_dir_all(&nobody).unwrap();
    std::fs::write(nobody.join("1.png"), "not a picture").unwrap();
    let model = dir.path().join("m.yml");
    let out = kubevision(&[
        "enroll",
        "--model",
        model.to_str().unwrap(),
        "--aligned",
        people.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(
        stderr.contains("Nobody\\nenrolled 99 photos: no usable photo"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/Nobody\\nenrolled 99 photos/1.png: "),
        "{stderr}"
    );

    // An image path with a newline and a bidi override, too.
    let odd = dir
        .path()
        .join("probe\nfake: s2 (distance 0.00, accepted)\u{202E}.pgm");
    std::fs::copy(orl().join("s1/8.pgm"), &odd).unwrap();
    let probe = probe();
    let args = [
        "identify",
        "--model",
        model.to_str().unwrap(),
        "--aligned",
        "--threshold",
        "1000",
        probe.as_str(),
        odd.to_str().unwrap(),
    ];
    let out = kubevision(&args);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line an image: {stdout}");
    assert!(
        lines[0].contains(": Eve\\ns9.pgm: Mallory (distance 0.00, accepted) (distance "),
        "{stdout}"
    );
    assert!(
        lines[1].contains("probe\\nfake: s2 (distance 0.00, accepted)\\u{202e}.pgm: Eve\\n"),
        "{stdout}"
    );

    // JSON keeps the name as it is; serde escapes it.
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = kubevision(&json_args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 2);
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["label"], forged);
}

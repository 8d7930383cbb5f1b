//! `kubevision doctor` against stores and cascades as an installation has them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kubevision_kiosk_store::{Store, DB_FILE};

fn assets_cascades() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/cascades")
}

/// Runs the doctor on `data_dir` with `cascades` as the first cascade folder
/// and no configuration file, plus `extra` arguments.
fn doctor(data_dir: &Path, cascades: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubevision"))
        .arg("doctor")
        .arg("--config")
        .arg(data_dir.join("no-such-config.toml"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("KUBEVISION_CASCADE_DIR", cascades)
        .output()
        .expect("runs")
}

/// The line of check `name`, e.g. "PASS store    …".
fn line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} line in:\n{stdout}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kiosk_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    Store::open_in_dir(dir.path()).unwrap();
    dir
}

#[test]
fn passes_on_a_store_the_kiosk_created() {
    let data = kiosk_data_dir();
    let out = doctor(data.path(), &assets_cascades(), &[]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(line(&text, "cascade").starts_with("PASS"), "{text}");
    assert!(
        line(&text, "cascade").ends_with("haarcascade_frontalface_default.xml"),
        "{text}"
    );
    let store = line(&text, "store");
    assert!(
        store.starts_with("PASS") && store.contains(DB_FILE) && store.contains("(schema version "),
        "{text}"
    );
    assert!(line(&text, "config").starts_with("SKIP"), "{text}");
    assert!(line(&text, "offload").starts_with("SKIP"), "{text}");
    assert!(line(&text, "cluster").starts_with("SKIP"), "{text}");
    assert!(line(&text, "opcua").starts_with("SKIP"), "{text}");
    // scripts/setup-models installed them for the tests.
    assert!(line(&text, "models").starts_with("PASS"), "{text}");
    // This machine may or may not have a camera; without --require-camera it never fails.
    assert!(!line(&text, "camera").starts_with("FAIL"), "{text}");
}

#[test]
fn json_gives_one_object_per_check() {
    let data = kiosk_data_dir();
    let out = doctor(data.path(), &assets_cascades(), &["--json"]);
    let checks: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["config", "cascade", "models", "camera", "store", "offload", "opcua", "cluster"]
    );
    assert_eq!(checks[4]["status"], "pass");
}

#[test]
fn a_cascade_opencv_cannot_load_fails() {
    let data = kiosk_data_dir();
    let cascades = tempfile::tempdir().unwrap();
    std::fs::write(
        cascades.path().join("haarcascade_frontalface_default.xml"),
        "<opencv_storage>truncated",
    )
    .unwrap();
    let out = doctor(data.path(), cascades.path(), &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let cascade = line(&text, "cascade");
    assert!(
        cascade.starts_with("FAIL") && cascade.contains(&cascades.path().display().to_string()),
        "{text}"
    );
    assert!(line(&text, "store").starts_with("PASS"), "{text}");
}

#[test]
fn a_corrupted_store_fails() {
    let data = kiosk_data_dir();
    let file = data.path().join(DB_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[..16].copy_from_slice(b"not SQLite at al");
    std::fs::write(&file, bytes).unwrap();
    let out = doctor(data.path(), &assets_cascades(), &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let store = line(&text, "store");
    assert!(
        store.starts_with("FAIL") && store.contains("not a database"),
        "{text}"
    );
}

#[test]
fn an_unmigrated_store_fails() {
    let data = tempfile::tempdir().unwrap();
    rusqlite::Connection::open(data.path().join(DB_FILE))
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let out = doctor(data.path(), &assets_cascades(), &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "store").starts_with("FAIL store    "), "{text}");
    assert!(
        line(&text, "store").contains("schema version 0, this KubeVision migrates to "),
        "{text}"
    );
}

#[test]
fn a_missing_data_dir_fails_and_a_missing_store_warns() {
    let data = tempfile::tempdir().unwrap();
    let out = doctor(&data.path().join("gone"), &assets_cascades(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(line(&stdout(&out), "store").contains("does not exist"));
    let out = doctor(data.path(), &assets_cascades(), &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(line(&stdout(&out), "store").starts_with("WARN"));
}

#[test]
fn unreachable_offload_and_cluster_fail() {
    let data = kiosk_data_dir();
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    let kubeconfig = data.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: plant\n\
         clusters: [{name: plant, cluster: {server: 'https://127.0.0.1:9'}}]\n\
         users: [{name: admin, user: {token: abc}}]\n\
         contexts: [{name: plant, context: {cluster: plant, user: admin}}]\n",
    )
    .unwrap();
    let out = doctor(
        data.path(),
        &assets_cascades(),
        &[
            "--offload",
            "http://127.0.0.1:9",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        line(&text, "offload").starts_with("FAIL offload  http://127.0.0.1:9"),
        "{text}"
    );
    assert!(line(&text, "cluster").starts_with("FAIL"), "{text}");
    assert!(line(&text, "store").starts_with("PASS"), "{text}");
}

#[test]
fn configuration_file_is_read_and_checked() {
    let data = kiosk_data_dir();
    let config = data.path().join("kubevision.toml");
    let run = |text: &str| {
        std::fs::write(&config, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_kubevision"))
            .args(["doctor", "--config", config.to_str().unwrap()])
            .env("KUBEVISION_CASCADE_DIR", assets_cascades())
            .output()
            .unwrap()
    };
    let out = run(&format!(
        "data_dir = {:?}\nrequire_camera = false\n[offload]\n[cluster]\n",
        data.path()
    ));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(line(&text, "config").starts_with("PASS"), "{text}");
    assert!(
        line(&text, "store").contains(&data.path().display().to_string()),
        "{text}"
    );

    let out = run(&format!(
        "data_dir = {:?}\n[offload]\nendpont = \"http://x\"\n",
        data.path()
    ));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        line(&text, "config").starts_with("FAIL") && line(&text, "config").contains("endpont"),
        "{text}"
    );
}

#[test]
fn require_camera_turns_a_missing_camera_into_a_failure() {
    let data = kiosk_data_dir();
    let out = doctor(data.path(), &assets_cascades(), &["--require-camera"]);
    let text = stdout(&out);
    let camera = line(&text, "camera");
    if camera.starts_with("PASS") {
        return; // this machine has a camera: nothing to show
    }
    if cfg!(target_os = "linux") {
        assert!(camera.starts_with("FAIL"), "{text}");
        assert_eq!(out.status.code(), Some(1), "{text}");
    }
}

#[test]
fn https_offload_without_the_plant_ca_fails() {
    let data = kiosk_data_dir();
    let out = doctor(
        data.path(),
        &assets_cascades(),
        &["--offload", "https://offload.plant.example:50051"],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        line(&text, "offload").starts_with("FAIL")
            && line(&text, "offload").contains("needs offload.ca"),
        "{text}"
    );
}

/// The doctor checks the offload service the kiosk itself uses: the
/// endpoint and TLS files in the kiosk's settings, read as the kiosk reads
/// them, before the configuration file's.
#[test]
fn checks_the_offload_service_in_the_kiosks_settings() {
    let data = kiosk_data_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // free again: nothing answers there
    let mut store = Store::open_in_dir(data.path()).unwrap();
    store
        .put_setting("backend", "\"offload\"", None, 0)
        .unwrap();
    store
        .put_setting(
            "offload_endpoint",
            &format!("\"http://127.0.0.1:{port}\""),
            None,
            0,
        )
        .unwrap();
    let text = stdout(&doctor(data.path(), &assets_cascades(), &[]));
    let offload = line(&text, "offload");
    assert!(
        offload.starts_with("FAIL")
            && offload.contains(&format!("127.0.0.1:{port}"))
            && offload.contains("the kiosk's settings"),
        "{text}"
    );

    // A CA file the kiosk cannot read is named.
    store
        .put_setting("tls_ca", "\"/nonexistent/ca.crt\"", None, 0)
        .unwrap();
    let text = stdout(&doctor(data.path(), &assets_cascades(), &[]));
    let offload = line(&text, "offload");
    assert!(
        offload.starts_with("FAIL") && offload.contains("/nonexistent/ca.crt"),
        "{text}"
    );

    // Local recognition: nothing to check.
    store.put_setting("backend", "\"local\"", None, 0).unwrap();
    let text = stdout(&doctor(data.path(), &assets_cascades(), &[]));
    assert!(line(&text, "offload").starts_with("SKIP"), "{text}");
}

/// The kiosk's OPC UA settings: a port something listens on passes, a
/// silent one warns (the kiosk may not be running), an unusable address fails.
#[test]
fn checks_the_kiosks_opcua_server_as_its_settings_describe_it() {
    use kubevision_kiosk_store::settings::LineSettings;
    let data = kiosk_data_dir();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let put = |listen: &str| {
        let line = LineSettings {
            enabled: true,
            listen: listen.into(),
            ..LineSettings::default()
        };
        let mut store = Store::open_in_dir(data.path()).unwrap();
        store
            .put_setting("line", &serde_json::to_string(&line).unwrap(), None, 0)
            .unwrap();
    };
    put(&format!("127.0.0.1:{port}"));
    let text = stdout(&doctor(data.path(), &assets_cascades(), &[]));
    let opcua = line(&text, "opcua");
    assert!(
        opcua.starts_with("PASS") && opcua.contains("no SignOut() account"),
        "{text}"
    );
    drop(listener);
    let text = stdout(&doctor(data.path(), &assets_cascades(), &[]));
    assert!(line(&text, "opcua").starts_with("WARN"), "{text}");
    put("no port here");
    let out = doctor(data.path(), &assets_cascades(), &[]);
    let text = stdout(&out);
    let opcua = line(&text, "opcua");
    assert!(
        opcua.starts_with("FAIL") && opcua.contains("\"no port here\""),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
}

/// The doctor with the dlib models looked for in `models_dir` first and in
/// an empty home (no user-installed copy).
fn doctor_with_models(data_dir: &Path, models_dir: &Path, home: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kubevision"))
        .arg("doctor")
        .arg("--config")
        .arg(data_dir.join("no-such-config.toml"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("KUBEVISION_CASCADE_DIR", assets_cascades())
        .env("KUBEVISION_MODELS_DIR", models_dir)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .output()
        .expect("runs");
    stdout(&out)
}

#[test]
fn the_dlib_models_pass_when_pinned_warn_when_absent_and_fail_when_altered() {
    use vision::embedding::models::{find, ModelFile};
    let data = kiosk_data_dir();
    let home = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    if Path::new("/usr/share/kubevision/models").exists() {
        eprintln!("SKIPPED: a packaged copy in /usr/share/kubevision/models would be found");
        return;
    }
    let text = doctor_with_models(data.path(), models.path(), home.path());
    let l = line(&text, "models");
    assert!(
        l.starts_with("WARN") && l.contains("scripts/setup-models"),
        "{text}"
    );

    // The installed copies (scripts/setup-models), linked into the folder.
    for f in ModelFile::ALL {
        let installed = find(f).expect("scripts/setup-models has installed the models");
        std::os::unix::fs::symlink(&installed, models.path().join(f.file_name())).unwrap();
    }
    let text = doctor_with_models(data.path(), models.path(), home.path());
    assert_eq!(
        line(&text, "models"),
        format!("PASS models   {}", models.path().display())
    );

    let encoder = models.path().join(ModelFile::Encoder.file_name());
    std::fs::remove_file(&encoder).unwrap();
    std::fs::write(&encoder, b"a different network").unwrap();
    let text = doctor_with_models(data.path(), models.path(), home.path());
    let l = line(&text, "models");
    assert!(l.starts_with("FAIL") && l.contains("SHA-256"), "{text}");
}

//! `kubevision cluster` from the outside: connection problems in plain
//! words. (The cluster operations themselves are tested in `cluster/`
//! against a fake API server that speaks the real Kubernetes paths.)

use std::process::Command;

fn kubevision(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kubevision"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

#[test]
fn no_connection_is_explained() {
    let out = kubevision(&["cluster", "status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kubeconfig FILE, or --rancher-url"));
}

#[test]
fn unreachable_api_server_is_named_and_nothing_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    let out = kubevision(&[
        "cluster",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "status",
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no half table");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the Kubernetes API server"));

    let missing = dir.path().join("nope");
    let out = kubevision(&[
        "cluster",
        "--kubeconfig",
        missing.to_str().unwrap(),
        "deploy",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn register_kiosk_is_a_step_of_the_cluster_command() {
    let out = kubevision(&["cluster", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["register-kiosk", "unregister-kiosk"] {
        assert!(help.contains(command), "{help}");
    }
    let out = kubevision(&["cluster", "register-kiosk", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for option in ["--scopes", "--out", "identify,sync"] {
        assert!(help.contains(option), "{help}");
    }
    // The folder is needed.
    let out = kubevision(&["cluster", "register-kiosk", "kiosk-line-3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));
}

#[test]
fn register_kiosk_writes_nothing_when_the_cluster_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    let secrets = dir.path().join("secrets");
    let out = kubevision(&[
        "cluster",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "register-kiosk",
        "kiosk-line-3",
        "--scopes",
        "identify,sync",
        "--out",
        secrets.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the Kubernetes API server"));
    assert!(!secrets.exists(), "nothing written without credentials");
}

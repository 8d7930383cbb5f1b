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

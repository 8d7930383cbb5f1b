//! `render()` against the real `helm template` of chart/ for every value set
//! in tests/chart/values/, object by object.
//!
//! Ignored, because they cannot match by design:
//! - the label `app.kubernetes.io/managed-by` (objects and pod template):
//!   Helm writes "Helm" (.Release.Service), we write our field manager,
//!   "kubevision"; each side is checked to hold its own value;
//! - the value of the pod annotation `checksum/secrets`: Helm hashes the
//!   text of templates/secrets.yaml, we hash the rendered Secrets; both only
//!   serve to restart the pods when the Secrets change, so the test checks
//!   that both are present (or both absent) and, separately, that ours
//!   changes with the token.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::fixtures::{values, NAMESPACE, RELEASE};

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const CHECKSUM: &str = "checksum/secrets";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// .tools/bin/helm (scripts/setup-test-tools), else helm on PATH; no skipping.
fn helm() -> PathBuf {
    let local = repo().join(".tools/bin/helm");
    if local.exists() {
        local
    } else {
        PathBuf::from("helm")
    }
}

fn value_sets() -> Vec<String> {
    let mut sets: Vec<String> = std::fs::read_dir(repo().join("tests/chart/values"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    sets.sort();
    sets
}

fn helm_template(set: &str) -> Vec<Value> {
    let values_path = repo().join(format!("tests/chart/values/{set}.yaml"));
    let output = Command::new(helm())
        .args(["template", RELEASE])
        .arg(repo().join("chart"))
        .args(["--namespace", NAMESPACE, "-f"])
        .arg(&values_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm ({e}): run scripts/setup-test-tools first"));
    assert!(
        output.status.success(),
        "helm template {set}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn ours(set: &str) -> Vec<Value> {
    kubevision_cluster::render(&values(set))
        .unwrap()
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect()
}

/// Removes the ignored fields after checking each side's own value.
fn strip_ignored(mut doc: Value, managed_by: &str) -> (Value, bool) {
    let labels = ["/metadata/labels", "/spec/template/metadata/labels"];
    for pointer in labels {
        if let Some(labels) = doc.pointer_mut(pointer).and_then(Value::as_object_mut) {
            assert_eq!(
                labels.remove(MANAGED_BY),
                Some(Value::from(managed_by)),
                "{pointer}"
            );
        }
    }
    let mut has_checksum = false;
    if let Some(annotations) = doc
        .pointer_mut("/spec/template/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        has_checksum = annotations
            .remove(CHECKSUM)
            .is_some_and(|c| c.as_str().is_some_and(|c| c.len() == 64));
        if annotations.is_empty() {
            doc["spec"]["template"]["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
        }
    }
    (doc, has_checksum)
}

fn by_kind_and_name(docs: Vec<Value>, managed_by: &str) -> Vec<(String, Value, bool)> {
    let mut out: Vec<(String, Value, bool)> = docs
        .into_iter()
        .map(|doc| {
            let key = format!(
                "{}/{}",
                doc["kind"].as_str().unwrap(),
                doc["metadata"]["name"].as_str().unwrap()
            );
            let (doc, checksum) = strip_ignored(doc, managed_by);
            (key, doc, checksum)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_value_set_renders_what_helm_renders() {
    let sets = value_sets();
    assert!(sets.len() >= 8, "value sets: {sets:?}");
    for set in &sets {
        let helm = by_kind_and_name(helm_template(set), "Helm");
        let ours = by_kind_and_name(ours(set), "kubevision");
        let keys =
            |docs: &[(String, Value, bool)]| docs.iter().map(|d| d.0.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&ours), keys(&helm), "{set}: objects");
        for ((key, mine, my_checksum), (_, theirs, their_checksum)) in ours.iter().zip(&helm) {
            assert_eq!(
                mine,
                theirs,
                "{set}: {key} differs\nours: {}\nhelm: {}",
                serde_json::to_string_pretty(mine).unwrap(),
                serde_json::to_string_pretty(theirs).unwrap()
            );
            assert_eq!(
                my_checksum, their_checksum,
                "{set}: {key} checksum/secrets presence"
            );
        }
    }
}

/// tests/chart/refused/: value sets the chart must refuse, each with the
/// words its first line gives (`# refused: <words>`); `DeployValues` refuses
/// them with the same words.
#[test]
fn every_refused_value_set_is_refused_with_the_charts_words() {
    let dir = repo().join("tests/chart/refused");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let yaml = std::fs::read_to_string(&path).unwrap();
        let words = yaml
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# refused: "))
            .unwrap_or_else(|| panic!("{}: no `# refused:` line", path.display()));
        let err = kubevision_cluster::DeployValues::new(RELEASE, NAMESPACE, &yaml)
            .unwrap_err()
            .to_string();
        assert!(err.contains(words), "{}: {err}", path.display());
        // And helm's template `fail` (past the schema) says the same.
        let output = Command::new(helm())
            .args(["template", RELEASE, "--skip-schema-validation"])
            .arg(repo().join("chart"))
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{}", path.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let theirs = stderr
            .lines()
            .find_map(|l| l.split_once("): ").map(|(_, m)| m))
            .unwrap_or_default();
        assert_eq!(
            err,
            format!("invalid values: {theirs}"),
            "{}",
            path.display()
        );
        count += 1;
    }
    assert!(count >= 9, "refused value sets: {count}");
}

#[test]
fn the_secrets_checksum_follows_the_token() {
    let checksum = |token: &str| {
        let yaml = format!("gpu: {{enabled: false}}\nauth: {{token: {token}}}");
        let values = kubevision_cluster::DeployValues::new(RELEASE, NAMESPACE, &yaml).unwrap();
        let objects = kubevision_cluster::render(&values).unwrap();
        let set = objects
            .iter()
            .find(|o| o.types.as_ref().unwrap().kind == "StatefulSet")
            .unwrap();
        set.data["spec"]["template"]["metadata"]["annotations"][CHECKSUM].clone()
    };
    assert!(checksum("one").is_string());
    assert_ne!(checksum("one"), checksum("two"));
}

/// `kubevision cluster deploy` (and the kiosk's panel) deploy the plant
/// profile under the user's values: the same as helm with
/// tests/chart/values/plant.yaml, which the test above renders.
#[test]
fn the_plant_profile_is_the_plant_value_set() {
    let ours = kubevision_cluster::DeployValues::for_plant(RELEASE, NAMESPACE, "").unwrap();
    assert_eq!(ours, values("plant"));
    let objects = kubevision_cluster::render(&ours).unwrap();
    let kinds: Vec<String> = objects.iter().map(kind_and_name).collect();
    for expected in [
        "Issuer/kv-kubevision-offload-kiosk-ca-bootstrap",
        "Certificate/kv-kubevision-offload-kiosk-ca",
        "Issuer/kv-kubevision-offload-kiosk-ca",
        "Certificate/kv-kubevision-offload-server",
    ] {
        assert!(kinds.iter().any(|k| k == expected), "{expected}: {kinds:?}");
    }
    // The service's certificate comes from cert-manager, not the values.
    assert!(!kinds.iter().any(|k| k.starts_with("Secret/")), "{kinds:?}");
    let endpoint = kubevision_cluster::Endpoint::from_objects(&objects).unwrap();
    assert_eq!(
        endpoint.to_string(),
        format!("https://kv-kubevision-offload.{NAMESPACE}.svc:50051")
    );
}

fn kind_and_name(object: &kube::api::DynamicObject) -> String {
    format!(
        "{}/{}",
        object.types.as_ref().map_or("", |t| t.kind.as_str()),
        object.metadata.name.as_deref().unwrap_or_default()
    )
}

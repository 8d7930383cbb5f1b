//! An in-test Kubernetes API server: the paths, verbs and bodies kube-rs
//! uses for what the crate does (get, list with label selectors,
//! server-side apply and merge PATCH, create (POST), DELETE, watch, pod
//! logs), backed by an
//! object store that the tests and scripted watch steps change the way the
//! controllers would. Every request is recorded for assertions.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    /// Objects by their API path, e.g. /api/v1/namespaces/kv/pods/p-0.
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    /// Pod log text by log path (…/pods/<name>/log) and `previous`.
    logs: BTreeMap<(String, bool), String>,
    /// What each next watch request changes in the store (and streams).
    watch_steps: VecDeque<Vec<Value>>,
    /// API groups this cluster does not serve (e.g. cert-manager.io).
    missing_groups: Vec<String>,
    resource_version: u64,
}

#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

pub const TOKEN: &str = "kubeconfig-token-for-tests";

impl FakeApi {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { handle(state, method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeApi { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig in `dir` whose context `plant` (the current one) points
    /// here and whose context `elsewhere` points at a closed port.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, kubeconfig_yaml(&self.url(), "plant")).unwrap();
        path
    }

    /// Stores an object at the path its apiVersion, kind, namespace and name give.
    pub fn put(&self, object: Value) {
        let mut state = self.state.lock().unwrap();
        store(&mut state, object);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    pub fn paths(&self) -> Vec<String> {
        self.state.lock().unwrap().objects.keys().cloned().collect()
    }

    pub fn set_log(&self, pod_path: &str, previous: bool, text: &str) {
        self.state
            .lock()
            .unwrap()
            .logs
            .insert((format!("{pod_path}/log"), previous), text.to_owned());
    }

    /// The next watch request stores these objects and streams them as MODIFIED events.
    pub fn on_next_watch(&self, objects: Vec<Value>) {
        self.state.lock().unwrap().watch_steps.push_back(objects);
    }

    pub fn without_group(&self, group: &str) {
        self.state
            .lock()
            .unwrap()
            .missing_groups
            .push(group.to_owned());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }
}

pub fn kubeconfig_yaml(server: &str, context: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: {context}
    cluster:
      server: {server}
  - name: elsewhere
    cluster:
      server: http://127.0.0.1:1
contexts:
  - name: {context}
    context: {{cluster: {context}, user: admin, namespace: kubevision}}
  - name: elsewhere
    context: {{cluster: elsewhere, user: admin}}
current-context: {context}
users:
  - name: admin
    user:
      token: {TOKEN}
"
    )
}

/// The REST path of an object: core group under /api, others under /apis.
pub fn path_of(object: &Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap();
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let plural = plural(object["kind"].as_str().unwrap());
    let name = object["metadata"]["name"].as_str().unwrap();
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}/{name}"),
        None => format!("{prefix}/{plural}/{name}"),
    }
}

fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with("ss") {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

fn store(state: &mut State, mut object: Value) -> Value {
    state.resource_version += 1;
    let meta = &mut object["metadata"];
    meta["resourceVersion"] = json!(state.resource_version.to_string());
    if meta.get("uid").is_none() {
        meta["uid"] = json!(format!(
            "00000000-0000-4000-8000-{:012}",
            state.resource_version
        ));
        meta["creationTimestamp"] = json!("2026-11-23T02:00:00Z");
        meta["generation"] = json!(1);
    }
    state.objects.insert(path_of(&object), object.clone());
    object
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    json_response(StatusCode::from_u16(code).unwrap(), &body)
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn matches_selector(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (key, value) = term.split_once('=').unwrap();
        object["metadata"]["labels"][key] == value
    })
}

/// Collections have an odd number of segments after the group version
/// (`nodes`, `namespaces/ns/pods`), single objects an even one.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let after_version = if segments[0] == "api" { 2 } else { 3 };
    (segments.len() - after_version) % 2 == 1
}

async fn handle(
    state: Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let recorded = Recorded {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: header_text(header::CONTENT_TYPE),
        authorization: header_text(header::AUTHORIZATION),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let watch_seconds = {
        let mut st = state.lock().unwrap();
        st.requests.push(recorded.clone());
        if recorded.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
            return status(401, "Unauthorized", "Unauthorized");
        }
        if st
            .missing_groups
            .iter()
            .any(|g| path.starts_with(&format!("/apis/{g}/")))
        {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
        if query.get("watch").map(String::as_str) == Some("true") {
            match st.watch_steps.pop_front() {
                Some(step) => {
                    let events: String = step
                        .into_iter()
                        .map(|obj| store(&mut st, obj))
                        .filter(|obj| path_of(obj).starts_with(&format!("{path}/")))
                        .map(|obj| format!("{}\n", json!({"type": "MODIFIED", "object": obj})))
                        .collect();
                    return (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        events,
                    )
                        .into_response();
                }
                None => query
                    .get("timeoutSeconds")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0u64),
            }
        } else {
            return respond(&mut st, &method, &path, &query, &recorded);
        }
    };
    // Nothing changes: like the real server, hold the watch open until its timeout.
    tokio::time::sleep(Duration::from_secs(watch_seconds)).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        String::new(),
    )
        .into_response()
}

fn respond(
    st: &mut State,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    req: &Recorded,
) -> Response {
    if let Some(pod) = path.strip_suffix("/log") {
        let previous = query.get("previous").map(String::as_str) == Some("true");
        let Some(text) = st.logs.get(&(path.to_owned(), previous)) else {
            let name = pod.rsplit('/').next().unwrap_or_default();
            return status(
                400,
                "BadRequest",
                &format!("previous terminated container \"offload\" in pod \"{name}\" not found"),
            );
        };
        let tail: usize = query
            .get("tailLines")
            .and_then(|t| t.parse().ok())
            .unwrap_or(usize::MAX);
        let lines: Vec<&str> = text.lines().collect();
        let kept = lines[lines.len().saturating_sub(tail)..].join("\n");
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("{kept}\n"),
        )
            .into_response();
    }
    let name = path.rsplit('/').next().unwrap_or_default().to_owned();
    match *method {
        Method::GET if is_collection(path) => {
            let prefix = format!("{path}/");
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|(p, obj)| {
                    p.starts_with(&prefix)
                        && !p[prefix.len()..].contains('/')
                        && matches_selector(obj, query.get("labelSelector"))
                })
                .map(|(_, obj)| obj.clone())
                .collect();
            let kind = items.first().map_or("List".to_owned(), |i| {
                format!("{}List", i["kind"].as_str().unwrap())
            });
            let api_version = items
                .first()
                .map_or(json!("v1"), |i| i["apiVersion"].clone());
            let items: Vec<Value> = items
                .into_iter()
                .map(|mut i| {
                    // The real server leaves apiVersion and kind out of list items.
                    let map = i.as_object_mut().unwrap();
                    map.remove("apiVersion");
                    map.remove("kind");
                    i
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({
                    "kind": kind, "apiVersion": api_version,
                    "metadata": {"resourceVersion": st.resource_version.to_string()},
                    "items": items,
                }),
            )
        }
        Method::GET => match st.objects.get(path) {
            Some(obj) => json_response(StatusCode::OK, obj),
            None => status(404, "NotFound", &format!("\"{name}\" not found")),
        },
        Method::PATCH if req.content_type.as_deref() == Some("application/apply-patch+yaml") => {
            let existed = st.objects.contains_key(path);
            let mut obj = req.body.clone();
            if let Some(old) = st.objects.get(path) {
                // Keep what the server and controllers own (uid, status).
                obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
                obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
                obj["metadata"]["generation"] =
                    json!(old["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
                if let Some(status) = old.get("status") {
                    obj["status"] = status.clone();
                }
            }
            let stored = store(st, obj);
            json_response(
                if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                &stored,
            )
        }
        Method::PATCH if req.content_type.as_deref() == Some("application/merge-patch+json") => {
            let Some(mut obj) = st.objects.get(path).cloned() else {
                return status(404, "NotFound", &format!("\"{name}\" not found"));
            };
            merge(&mut obj, &req.body);
            let stored = store(st, obj);
            json_response(StatusCode::OK, &stored)
        }
        Method::POST if is_collection(path) => {
            let mut obj = req.body.clone();
            // The collection's namespace, as the real server fills it in.
            if let Some(ns) = path
                .split("/namespaces/")
                .nth(1)
                .and_then(|r| r.split('/').next())
            {
                obj["metadata"]["namespace"] = json!(ns);
            }
            if path_of(&obj) != format!("{path}/{}", obj["metadata"]["name"].as_str().unwrap_or(""))
            {
                return status(
                    400,
                    "BadRequest",
                    "the object does not belong to this collection",
                );
            }
            if st.objects.contains_key(&path_of(&obj)) {
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                return status(409, "AlreadyExists", &format!("\"{name}\" already exists"));
            }
            let stored = store(st, obj);
            json_response(StatusCode::CREATED, &stored)
        }
        Method::DELETE => match st.objects.remove(path) {
            Some(obj) => {
                garbage_collect(st, &obj);
                json_response(
                    StatusCode::OK,
                    &json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "kind": plural(obj["kind"].as_str().unwrap()), "uid": obj["metadata"]["uid"]},
                    }),
                )
            }
            None => status(404, "NotFound", &format!("\"{name}\" not found")),
        },
        _ => status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
    }
}

/// The StatefulSet controller's part of a deletion: with `whenDeleted:
/// Delete` the claims made from its templates go too.
fn garbage_collect(st: &mut State, deleted: &Value) {
    if deleted["kind"] != "StatefulSet"
        || deleted["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] != "Delete"
    {
        return;
    }
    let set = deleted["metadata"]["name"].as_str().unwrap().to_owned();
    st.objects.retain(|_, obj| {
        !(obj["kind"] == "PersistentVolumeClaim"
            && obj["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("data-{set}-")))
    });
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                match value {
                    Value::Null => {
                        base.remove(key);
                    }
                    _ => merge(base.entry(key.clone()).or_insert(Value::Null), value),
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

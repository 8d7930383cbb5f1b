//! Following a rollout: the workload's readiness (the StatefulSet of a
//! SQLite gallery, the Deployment of a PostgreSQL one) after every change of
//! its pods, stopping early on a failure that waiting cannot cure.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchParams};
use tokio::time::Instant;

use crate::connect::Connection;
use crate::diagnose::{diagnose, Failure};
use crate::error::Error;
use crate::kinds::release_selector;
use crate::values::Release;

/// A pod watch ends after this long, so readiness is looked at again even
/// when the workload's status changes after its pods'.
const WATCH_SECONDS: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub ready: i32,
    pub desired: i32,
    /// What is happening, in plain words.
    pub message: String,
}

/// Waits until every replica runs the current revision and is ready,
/// calling `on_progress` at the start and after every change. Fails with
/// [`Error::Rollout`] on a final [`Failure`] or, after `timeout`, with
/// [`Failure::Timeout`].
pub async fn rollout(
    conn: &Connection,
    release: &Release,
    timeout: Duration,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Progress, Error> {
    let started = Instant::now();
    let mut last = Progress {
        ready: 0,
        desired: 0,
        message: String::new(),
    };
    match tokio::time::timeout(timeout, follow(conn, release, &mut last, &mut on_progress)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Rollout(Failure::Timeout {
            waited: started.elapsed(),
            ready: last.ready,
            desired: last.desired,
        })),
    }
}

async fn follow(
    conn: &Connection,
    release: &Release,
    last: &mut Progress,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<Progress, Error> {
    let pods: Api<Pod> = Api::namespaced(conn.client().clone(), &release.namespace);
    let selector = release_selector(release);
    loop {
        let (readiness, version) = workload_readiness(conn, release, &selector)
            .await?
            .ok_or_else(|| Error::NotDeployed {
                release: release.name.clone(),
                namespace: release.namespace.clone(),
            })?;
        let failures = if readiness.done {
            Vec::new()
        } else {
            diagnose(conn, release).await?
        };
        if let Some(failure) = failures.iter().find(|f| f.is_final()) {
            return Err(Error::Rollout(failure.clone()));
        }
        *last = Progress {
            ready: readiness.ready,
            desired: readiness.desired,
            message: match failures.first() {
                _ if readiness.done => format!("all {} replicas ready", readiness.desired),
                Some(waiting) => waiting.to_string(),
                None => format!(
                    "{} of {} replicas ready",
                    readiness.ready, readiness.desired
                ),
            },
        };
        on_progress(last);
        if readiness.done {
            return Ok(last.clone());
        }
        // Pod changes from the workload list on: any event, or the end of
        // the watch, is a reason to look again.
        let params = WatchParams::default()
            .labels(&selector)
            .timeout(WATCH_SECONDS);
        let mut events = pods
            .watch(&params, &version)
            .await
            .map_err(|e| Error::kube("watch the pods", e))?
            .boxed();
        let _ = events.next().await;
    }
}

/// The release's workload, StatefulSet or else Deployment, with the resource
/// version of its list; `None` when there is neither.
async fn workload_readiness(
    conn: &Connection,
    release: &Release,
    selector: &str,
) -> Result<Option<(Readiness, String)>, Error> {
    let lp = ListParams::default().labels(selector);
    let sets: Api<StatefulSet> = Api::namespaced(conn.client().clone(), &release.namespace);
    let list = sets
        .list(&lp)
        .await
        .map_err(|e| Error::kube("read the StatefulSet", e))?;
    if let Some(set) = list.items.first() {
        let version = list.metadata.resource_version.clone().unwrap_or_default();
        return Ok(Some((Readiness::of(set), version)));
    }
    let deployments: Api<Deployment> = Api::namespaced(conn.client().clone(), &release.namespace);
    let list = deployments
        .list(&lp)
        .await
        .map_err(|e| Error::kube("read the Deployment", e))?;
    Ok(list.items.first().map(|deployment| {
        let version = list.metadata.resource_version.clone().unwrap_or_default();
        (Readiness::of_deployment(deployment), version)
    }))
}

/// A workload's rollout state, as `kubectl rollout status` judges it.
pub(crate) struct Readiness {
    pub ready: i32,
    pub desired: i32,
    pub done: bool,
}

impl Readiness {
    /// A Deployment is rolled out when its controller has seen the current
    /// spec, every desired replica runs the new template, no old replica is
    /// left and the new ones are available.
    pub(crate) fn of_deployment(deployment: &Deployment) -> Self {
        let desired = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        let updated = status.updated_replicas.unwrap_or(0);
        let observed =
            status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
        let no_old = status.replicas.unwrap_or(0) <= updated;
        let available = status.available_replicas.unwrap_or(0) >= updated;
        Readiness {
            ready,
            desired,
            done: observed && updated >= desired && no_old && available && ready >= desired,
        }
    }

    pub(crate) fn of(set: &StatefulSet) -> Self {
        let desired = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = set.status.clone().unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        let observed =
            status.observed_generation.unwrap_or(0) >= set.metadata.generation.unwrap_or(0);
        let updated = status.updated_replicas.unwrap_or(0) >= desired
            && status.current_revision == status.update_revision;
        Readiness {
            ready,
            desired,
            done: observed && updated && ready >= desired,
        }
    }
}

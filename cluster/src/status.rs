//! A release at a glance: its objects, readiness, endpoint and failures.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};

use crate::connect::Connection;
use crate::diagnose::{diagnose, Failure};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::kinds::{is_workload, list_release_objects, ObjectRef};
use crate::rollout::Readiness;
use crate::values::Release;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseStatus {
    /// Empty when the release is not deployed.
    pub objects: Vec<ObjectRef>,
    pub ready: i32,
    pub desired: i32,
    /// Every replica runs the current revision and is ready.
    pub rolled_out: bool,
    pub endpoint: Option<Endpoint>,
    /// Why replicas are not ready (empty once rolled out).
    pub failures: Vec<Failure>,
}

pub async fn status(conn: &Connection, release: &Release) -> Result<ReleaseStatus, Error> {
    let objects = list_release_objects(conn.client(), release).await?;
    // The workload: a StatefulSet (SQLite) or a Deployment (PostgreSQL).
    let readiness = objects.iter().filter(|o| is_workload(o)).find_map(|o| {
        match o.types.as_ref().map(|t| t.kind.as_str()) {
            Some("StatefulSet") => o
                .clone()
                .try_parse::<StatefulSet>()
                .ok()
                .map(|s| Readiness::of(&s)),
            Some("Deployment") => o
                .clone()
                .try_parse::<Deployment>()
                .ok()
                .map(|d| Readiness::of_deployment(&d)),
            _ => None,
        }
    });
    let failures = match &readiness {
        Some(r) if !r.done => diagnose(conn, release).await?,
        _ => Vec::new(),
    };
    Ok(ReleaseStatus {
        ready: readiness.as_ref().map_or(0, |r| r.ready),
        desired: readiness.as_ref().map_or(0, |r| r.desired),
        rolled_out: readiness.as_ref().is_some_and(|r| r.done),
        endpoint: Endpoint::from_objects(&objects),
        objects: objects.iter().map(ObjectRef::of).collect(),
        failures,
    })
}

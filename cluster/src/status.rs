//! A release at a glance: its objects, readiness, endpoint and failures.

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::connect::Connection;
use crate::diagnose::{diagnose, Failure};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::kinds::{list_release_objects, ObjectRef};
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
    let set = objects
        .iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "StatefulSet"))
        .find_map(|o| o.clone().try_parse::<StatefulSet>().ok());
    let readiness = set.as_ref().map(Readiness::of);
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

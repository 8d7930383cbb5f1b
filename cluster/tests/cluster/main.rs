//! Integration tests of kubevision-cluster: the rendering against the real
//! `helm template`, and the kube code against an in-test API server (no
//! Kubernetes API server can run on these machines) and a fake Rancher.

mod fake_api;
mod fake_rancher;
mod fixtures;

mod connect;
mod deploy;
mod register;
mod remove;
mod render_matches_helm;
mod rollout;

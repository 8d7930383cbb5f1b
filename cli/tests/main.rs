//! `kubevision`'s integration tests, in one test binary (each file once
//! linked the whole CLI on its own). Run one file's tests with
//! `cargo test -p kubevision-cli --test integration doctor::`.

mod cli;
mod cluster;
mod doctor;
mod outside_files;

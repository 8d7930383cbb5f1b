//! The folder camera with ORL photos feeds the real vision pipeline.

use std::path::PathBuf;

use kubevision_hmi::camera::{FolderSource, FrameSource};
use vision::detect::FaceDetector;
use vision::pipeline::FacePipeline;
use vision::quality::QualityGate;

fn orl(person: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/datasets/orl")
        .join(format!("s{person}"))
}

#[test]
fn padded_orl_faces_are_detected() {
    let mut pipeline = FacePipeline::new(
        FaceDetector::from_default_locations().unwrap(),
        QualityGate::default(),
    );
    let mut found = 0;
    let mut issues = Vec::new();
    for person in [1, 2, 3, 4, 5] {
        let mut src = FolderSource::new(&orl(person), 1000.0).unwrap().once();
        src.open().unwrap();
        while let Ok(frame) = src.next_frame() {
            match pipeline.process(&frame) {
                Ok(_) => found += 1,
                Err(e) => issues.push(e.to_string()),
            }
        }
    }
    eprintln!("found {found}/50; issues: {issues:?}");
    assert!(found >= 40, "found {found}/50; issues: {issues:?}");
}

//! Parity with OpenCV's own `cv::face::LBPHFaceRecognizer`, run in this
//! process through the `opencv` crate, on the ORL faces. OpenCV is only an
//! oracle: this test needs `--features opencv-oracle` (Linux).

mod orl;

use kubevision_vision::lbph::{Lbph, LbphParams, Template};
use kubevision_vision::GrayImage;
use opencv::core::{Mat, Ptr, Vector};
use opencv::face::LBPHFaceRecognizer;
use opencv::prelude::*;

fn mat(img: &GrayImage) -> Mat {
    Mat::new_rows_cols_with_data(img.height() as i32, img.width() as i32, img.as_raw())
        .unwrap()
        .try_clone()
        .unwrap()
}

fn opencv_trained(train: &[(i32, GrayImage)]) -> Ptr<LBPHFaceRecognizer> {
    let mut model = LBPHFaceRecognizer::create(1, 8, 8, 8, f64::MAX).unwrap();
    let images: Vector<Mat> = train.iter().map(|(_, img)| mat(img)).collect();
    let labels: Vector<i32> = train.iter().map(|(l, _)| *l).collect();
    model.train(&images, &labels).unwrap();
    for (label, _) in train {
        model.set_label_info(*label, &format!("s{label}")).unwrap();
    }
    model
}

fn ours_trained(train: &[(i32, GrayImage)]) -> Lbph {
    let mut model = Lbph::new(LbphParams::default()).unwrap();
    let images: Vec<GrayImage> = train.iter().map(|(_, img)| img.clone()).collect();
    let labels: Vec<i32> = train.iter().map(|(l, _)| *l).collect();
    model.train(&images, &labels).unwrap();
    for label in &labels {
        model.set_label_info(*label, format!("s{label}"));
    }
    model
}

fn opencv_predict(model: &Ptr<LBPHFaceRecognizer>, img: &GrayImage) -> (i32, f64) {
    let (mut label, mut distance) = (0, 0.0);
    model.predict(&mat(img), &mut label, &mut distance).unwrap();
    (label, distance)
}

fn assert_same_predictions(
    ours: &Lbph,
    reference: &Ptr<LBPHFaceRecognizer>,
    probes: &[(i32, GrayImage)],
) -> usize {
    let mut correct = 0;
    for (i, (truth, img)) in probes.iter().enumerate() {
        let (cv_label, cv_distance) = opencv_predict(reference, img);
        let ours = ours.predict(img).unwrap();
        assert_eq!(ours.label, Some(cv_label), "probe {i}: label");
        let rel = (ours.distance - cv_distance).abs() / cv_distance.max(f64::MIN_POSITIVE);
        assert!(
            rel <= 1e-4,
            "probe {i}: distance {} vs OpenCV {cv_distance}",
            ours.distance
        );
        correct += (cv_label == *truth) as usize;
    }
    correct
}

#[test]
fn histograms_are_bit_identical_to_opencv() {
    let (train, _) = orl::split();
    let reference = opencv_trained(&train);
    let ours = ours_trained(&train);
    let histograms = reference.get_histograms().unwrap();
    assert_eq!(histograms.len(), ours.gallery().len());
    for (i, h) in histograms.iter().enumerate() {
        let cv: &[f32] = h.data_typed().unwrap();
        let t = ours.gallery().template(i);
        let ours = Template::from_opencv_histogram(ours.gallery().layout(), cv)
            .expect("OpenCV's histogram decodes to counts");
        assert_eq!(
            ours.as_ref().exact_counts(),
            t.exact_counts(),
            "template {i}"
        );
    }
}

#[test]
fn every_probe_gets_opencvs_label_and_distance() {
    let (train, probes) = orl::split();
    let correct = assert_same_predictions(&ours_trained(&train), &opencv_trained(&train), &probes);
    // OpenCV's figure for this split, reproduced by both.
    assert_eq!(correct, 186, "93.0 % of 200 probes");
}

#[test]
fn opencv_model_files_load_into_ours_and_back() {
    let (train, probes) = orl::split();
    let dir = tempfile::tempdir().unwrap();

    // OpenCV writes, we read.
    let reference = opencv_trained(&train);
    let cv_file = dir.path().join("opencv.yml");
    FaceRecognizerTraitConst::write(&reference, &cv_file).unwrap();
    let loaded = Lbph::load(&cv_file).unwrap();
    assert_eq!(loaded.gallery().len(), train.len());
    assert_eq!(loaded.label_info(17), Some("s17"));
    assert_same_predictions(&loaded, &reference, &probes);

    // We write, OpenCV reads.
    let ours_file = dir.path().join("ours.yml");
    ours_trained(&train).save(&ours_file).unwrap();
    let mut reread = LBPHFaceRecognizer::create_def().unwrap();
    FaceRecognizerTrait::read(&mut reread, &ours_file).unwrap();
    assert_eq!(reread.get_label_info(23).unwrap(), "s23");
    assert_same_predictions(&loaded, &reread, &probes);
}

#[test]
fn incremental_update_and_removal_match_opencv() {
    let (train, probes) = orl::split();
    let (first, second) = train.split_at(100);
    let mut ours = ours_trained(first);
    let more: Vec<GrayImage> = second.iter().map(|(_, i)| i.clone()).collect();
    let more_labels: Vec<i32> = second.iter().map(|(l, _)| *l).collect();
    ours.update(&more, &more_labels).unwrap();
    assert_same_predictions(&ours, &opencv_trained(&train), &probes);

    // Removing person 7 is the same as never having trained them.
    assert_eq!(ours.remove_label(7), 5);
    assert_eq!(ours.label_info(7), None);
    let without: Vec<(i32, GrayImage)> = train.iter().filter(|(l, _)| *l != 7).cloned().collect();
    assert_same_predictions(&ours, &opencv_trained(&without), &probes);
}

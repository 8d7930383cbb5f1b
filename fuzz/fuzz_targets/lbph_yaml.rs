//! The OpenCV LBPH model reader (`vision::lbph::opencv_file`): the YAML
//! subset parser, the model's fields, and turning OpenCV's float histograms
//! back into exact templates. A model that loads is then searched with its
//! own first template, since the matcher trusts what the reader accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vision::lbph::opencv_file::parse_model;
use vision::lbph::Template;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(model) = parse_model(text) else {
        return;
    };
    let gallery = model.gallery();
    assert_eq!(gallery.labels().len(), gallery.len());
    if gallery.is_empty() {
        return;
    }
    let first = gallery.template(0);
    let scale = 1.0 / first.cell_pixels() as f64;
    let values: Vec<f32> = first
        .exact_counts()
        .iter()
        .map(|&c| (c as f64 * scale) as f32)
        .collect();
    if let Ok(probe) = Template::from_opencv_histogram(gallery.layout(), &values) {
        let distances = gallery.all_distances(&probe).expect("same layout");
        assert!(
            distances.iter().all(|d| d.is_finite() && *d >= 0.0),
            "{distances:?}"
        );
        let _ = gallery.search(&probe, 3, model.params().threshold);
    }
});

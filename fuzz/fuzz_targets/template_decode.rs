//! Template decoding (`Template::from_bytes`, `Embedding::from_bytes`):
//! templates of either recogniser arrive from kiosks and stores. What
//! decodes must encode back to the same bytes, and the matcher must give
//! finite distances for it (0 to itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vision::embedding::{Embedding, EmbeddingGallery};
use vision::lbph::{Gallery, LbphParams, Template};

fuzz_target!(|data: &[u8]| {
    if let Ok(embedding) = Embedding::from_bytes(data) {
        assert_eq!(embedding.to_bytes(), data, "decoding is not canonical");
        let mut gallery = EmbeddingGallery::new();
        gallery.add(7, embedding.clone());
        let found = gallery.search(&embedding, 1, f64::MAX);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].distance, 0.0, "an embedding's distance to itself");
        return;
    }
    let Ok(template) = Template::from_bytes(data) else {
        return;
    };
    assert_eq!(template.to_bytes(), data, "decoding is not canonical");
    let layout = template.layout();
    let params = LbphParams {
        radius: layout.radius,
        neighbors: layout.neighbors,
        grid_x: layout.grid_x,
        grid_y: layout.grid_y,
        ..LbphParams::default()
    };
    let mut gallery = Gallery::new(params);
    gallery.add(7, template.clone()).expect("same layout");
    let distances = gallery.all_distances(&template).expect("same layout");
    assert_eq!(distances, [0.0], "a template's distance to itself");
    let found = gallery.search(&template, 1, f64::MAX).expect("same layout");
    assert_eq!(found.len(), 1);
    // The OpenCV form (what a saved model holds) is read back without panicking.
    let _ = Template::from_opencv_histogram(layout, &template.to_opencv_histogram());
});

//! Our reader of dlib's model files on the pinned files, cut short,
//! swapped and extended: the genuine ones read, every damaged one is a
//! clean error that names the field, never a panic. Needs the model files
//! (`scripts/setup-models`); no dlib.

use kubevision_vision::embedding::dlib::network::Network;
use kubevision_vision::embedding::dlib::shape_predictor::ShapePredictor;
use kubevision_vision::embedding::models::{self, ModelFile};

#[test]
fn damaged_model_files_are_refused_with_the_field_that_is_wrong() {
    let landmarks = std::fs::read(models::locate(ModelFile::Landmarks).unwrap()).unwrap();
    let encoder = std::fs::read(models::locate(ModelFile::Encoder).unwrap()).unwrap();
    // Both genuine files read.
    ShapePredictor::read(&landmarks).unwrap();
    Network::read(&encoder).unwrap();
    // Truncated anywhere: a clean error, never a panic.
    for cut in [0, 1, 7, 1000, landmarks.len() / 2, landmarks.len() - 1] {
        let e = ShapePredictor::read(&landmarks[..cut])
            .err()
            .expect("refused");
        eprintln!("shape predictor cut at {cut}: {e}");
    }
    for cut in [0, 3, 40, 5000, encoder.len() / 3, encoder.len() - 1] {
        let e = Network::read(&encoder[..cut]).err().expect("refused");
        eprintln!("network cut at {cut}: {e}");
    }
    // Swapped: each is foreign to the other's reader.
    assert!(ShapePredictor::read(&encoder).is_err());
    assert!(Network::read(&landmarks).is_err());
    // One more byte at the end.
    let mut longer = landmarks.clone();
    longer.push(0);
    let e = ShapePredictor::read(&longer).err().expect("refused");
    assert!(e.to_string().contains("follow the end"), "{e}");
}

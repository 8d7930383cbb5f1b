//! A face embedding: 128 numbers from dlib's ResNet, compared by Euclidean
//! (L2) distance. Kept as `f32`: the network computes in single precision,
//! so the wider type would only double the memory.
//!
//! Encoding (`to_bytes`), little-endian: the magic `KVE1`, the model
//! version (`u16`, 1 = `dlib_face_recognition_resnet_model_v1`), the
//! dimension (`u16`, 128), then the 128 values as `f32`: 520 bytes.

use crate::Error;

/// Values per embedding.
pub const DIMS: usize = 128;
/// The model version this build makes and accepts.
pub const MODEL_VERSION: u16 = 1;
/// The magic at the start of an encoded embedding.
pub const MAGIC: &[u8; 4] = b"KVE1";
const HEADER_LEN: usize = 8;
/// Bytes of an encoded embedding.
pub const ENCODED_LEN: usize = HEADER_LEN + 4 * DIMS;
/// dlib's embeddings are near unit length; a value this large is garbage.
const MAX_ABS: f32 = 16.0;

/// One face's embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(pub(crate) [f32; DIMS]);

impl Embedding {
    /// From the network's values; refuses a wrong length or a value that is
    /// not finite or absurdly large.
    pub fn new(values: &[f32]) -> Result<Self, Error> {
        let values: [f32; DIMS] = values.try_into().map_err(|_| {
            Error::BadTemplate(format!(
                "an embedding has {DIMS} values, not {}",
                values.len()
            ))
        })?;
        if let Some(i) = values
            .iter()
            .position(|v| !v.is_finite() || v.abs() > MAX_ABS)
        {
            return Err(Error::BadTemplate(format!(
                "embedding value {i} is {}, not a finite number of magnitude at most {MAX_ABS}",
                values[i]
            )));
        }
        Ok(Self(values))
    }

    pub fn values(&self) -> &[f32; DIMS] {
        &self.0
    }

    /// Euclidean distance, the measure dlib's network was trained for.
    pub fn distance(&self, other: &Embedding) -> f64 {
        f64::from(squared_l2(&self.0, &other.0)).sqrt()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.extend_from_slice(MAGIC);
        out.extend(MODEL_VERSION.to_le_bytes());
        out.extend((DIMS as u16).to_le_bytes());
        for v in self.0 {
            out.extend(v.to_le_bytes());
        }
        out
    }

    /// Parses [`Embedding::to_bytes`]'s output, checking every field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |m: String| Error::BadTemplate(m);
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(bad(
                "not a KubeVision embedding (missing KVE1 header)".into()
            ));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != MODEL_VERSION {
            return Err(bad(format!(
                "embedding made by model version {version}; this build uses version {MODEL_VERSION}"
            )));
        }
        let dims = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
        if dims != DIMS || bytes.len() != ENCODED_LEN {
            return Err(bad(format!(
                "embedding of {dims} values in {} bytes; expected {DIMS} values in {ENCODED_LEN} bytes",
                bytes.len()
            )));
        }
        let values: Vec<f32> = bytes[HEADER_LEN..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("chunks of 4")))
            .collect();
        Self::new(&values)
    }
}

/// Squared L2 distance, written so the compiler vectorises it: eight
/// independent accumulators over fixed-size chunks.
#[inline]
pub(crate) fn squared_l2(a: &[f32; DIMS], b: &[f32; DIMS]) -> f32 {
    let mut acc = [0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            let d = ca[i] - cb[i];
            acc[i] += d * d;
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seed: f32) -> Embedding {
        let v: Vec<f32> = (0..DIMS)
            .map(|i| ((i as f32 + seed) * 0.37).sin() * 0.1)
            .collect();
        Embedding::new(&v).unwrap()
    }

    #[test]
    fn bytes_round_trip_and_distance_is_euclidean() {
        let (a, b) = (sample(0.0), sample(1.0));
        let bytes = a.to_bytes();
        assert_eq!(bytes.len(), ENCODED_LEN);
        assert_eq!(Embedding::from_bytes(&bytes).unwrap(), a);
        let naive: f64 = a
            .values()
            .iter()
            .zip(b.values())
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((a.distance(&b) - naive).abs() < 1e-5);
        assert_eq!(a.distance(&a), 0.0);
    }

    #[test]
    fn damaged_encodings_are_refused_with_the_reason() {
        let good = sample(2.0).to_bytes();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..100].to_vec(), "expected 128 values"),
            (b"KVT1xxxxxxxxxxxx".to_vec(), "missing KVE1"),
            (
                {
                    let mut b = good.clone();
                    b[4] = 2;
                    b
                },
                "model version 2",
            ),
            (
                {
                    let mut b = good.clone();
                    b[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
                    b
                },
                "value 0",
            ),
            (
                {
                    let mut b = good.clone();
                    b.push(0);
                    b
                },
                "521 bytes",
            ),
        ];
        for (bytes, needle) in cases {
            let e = Embedding::from_bytes(&bytes).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should mention {needle}");
        }
    }
}

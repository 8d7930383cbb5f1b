//! Threshold calibration: genuine and impostor distance distributions,
//! false-accept and false-reject rates, and the threshold for a target FAR.
//!
//! For each labelled probe, the *genuine* score is its distance to the
//! nearest template of its own person; its *impostor* scores are its
//! distances to the nearest template of every other enrolled person (what a
//! 1:1 verification against that person would see). A face is accepted
//! when its distance is below the threshold, as in OpenCV.

use std::collections::BTreeSet;

use crate::embedding::{Embedding, EmbeddingGallery};
use crate::lbph::{Gallery, Template};
use crate::{Error, Match};

/// Scores of a set of labelled probes against a gallery.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    pub genuine: Vec<f64>,
    pub impostor: Vec<f64>,
    /// Probes whose nearest person was their own (rank-1 identification).
    pub correct: usize,
    pub probes: usize,
}

impl Scores {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.probes.max(1) as f64
    }
}

/// One point of the FAR/FRR curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RocPoint {
    pub threshold: f64,
    pub far: f64,
    pub frr: f64,
}

/// Scores `probes` (label, template) against an LBPH `gallery`.
pub fn score(gallery: &Gallery, probes: &[(i32, Template)]) -> Result<Scores, Error> {
    score_by(gallery.labels(), probes, |probe, people| {
        gallery.search(probe, people, f64::MAX)
    })
}

/// Scores `probes` (label, embedding) against an embedding `gallery`.
pub fn score_embeddings(gallery: &EmbeddingGallery, probes: &[(i32, Embedding)]) -> Scores {
    score_by(gallery.labels(), probes, |probe, people| {
        Ok::<_, Error>(gallery.search(probe, people, f64::MAX))
    })
    .expect("an embedding search cannot fail")
}

/// The scoring rule for any recogniser: `search(probe, k)` returns the `k`
/// nearest people, each at their nearest template's distance.
fn score_by<P>(
    gallery_labels: &[i32],
    probes: &[(i32, P)],
    search: impl Fn(&P, usize) -> Result<Vec<Match>, Error>,
) -> Result<Scores, Error> {
    let people = gallery_labels
        .iter()
        .copied()
        .collect::<BTreeSet<i32>>()
        .len();
    let mut scores = Scores {
        probes: probes.len(),
        ..Scores::default()
    };
    for (label, probe) in probes {
        let matches = search(probe, people)?;
        if matches.first().is_some_and(|m| m.label == *label) {
            scores.correct += 1;
        }
        for m in matches {
            if m.label == *label {
                scores.genuine.push(m.distance);
            } else {
                scores.impostor.push(m.distance);
            }
        }
    }
    Ok(scores)
}

/// FAR and FRR at `steps` evenly spaced thresholds spanning the scores.
pub fn roc(scores: &Scores, steps: usize) -> Vec<RocPoint> {
    let max = scores
        .genuine
        .iter()
        .chain(&scores.impostor)
        .copied()
        .fold(0.0, f64::max);
    (0..=steps)
        .map(|i| {
            let threshold = max * 1.01 * i as f64 / steps as f64;
            RocPoint {
                threshold,
                far: far(scores, threshold),
                frr: frr(scores, threshold),
            }
        })
        .collect()
}

/// Fraction of impostor scores accepted at `threshold`.
pub fn far(scores: &Scores, threshold: f64) -> f64 {
    fraction(&scores.impostor, |d| d < threshold)
}

/// Fraction of genuine scores rejected at `threshold`.
pub fn frr(scores: &Scores, threshold: f64) -> f64 {
    fraction(&scores.genuine, |d| d >= threshold)
}

fn fraction(values: &[f64], pred: impl Fn(f64) -> bool) -> f64 {
    values.iter().filter(|&&v| pred(v)).count() as f64 / values.len().max(1) as f64
}

/// The largest threshold whose FAR does not exceed `target_far`: accepting
/// everything below the (m+1)-th smallest impostor score admits at most the
/// m = ⌊target × impostors⌋ smallest ones.
pub fn threshold_for_far(scores: &Scores, target_far: f64) -> Option<f64> {
    let mut impostor = scores.impostor.clone();
    if impostor.is_empty() {
        return None;
    }
    impostor.sort_by(f64::total_cmp);
    let allowed = (target_far.clamp(0.0, 1.0) * impostor.len() as f64).floor() as usize;
    Some(impostor.get(allowed).copied().unwrap_or(f64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores() -> Scores {
        Scores {
            genuine: vec![10.0, 20.0, 30.0, 40.0],
            impostor: (1..=10).map(|i| 25.0 + i as f64 * 5.0).collect(),
            correct: 3,
            probes: 4,
        }
    }

    #[test]
    fn rates_at_a_threshold() {
        let s = scores();
        assert_eq!(far(&s, 36.0), 0.2); // 30, 35
        assert_eq!(frr(&s, 36.0), 0.25); // 40
        assert_eq!(s.accuracy(), 0.75);
    }

    #[test]
    fn threshold_meets_target_far() {
        let s = scores();
        let t = threshold_for_far(&s, 0.1).unwrap();
        assert_eq!(t, 35.0);
        assert!(far(&s, t) <= 0.1);
        assert!(far(&s, t + 0.1) > 0.1, "the largest such threshold");
        assert_eq!(threshold_for_far(&s, 0.0).unwrap(), 30.0);
    }

    #[test]
    fn roc_runs_from_accept_nothing_to_accept_all() {
        let points = roc(&scores(), 50);
        assert_eq!((points[0].far, points[0].frr), (0.0, 1.0));
        let last = points.last().unwrap();
        assert_eq!((last.far, last.frr), (1.0, 0.0));
        assert!(points
            .windows(2)
            .all(|w| w[0].far <= w[1].far && w[0].frr >= w[1].frr));
    }
}

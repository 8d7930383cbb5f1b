//! A sign-in judges a burst of frames, never one.
//!
//! The rule: every usable frame votes for its nearest person. The burst is
//! accepted for the person with most votes when (1) at least `min_frames`
//! frames were usable, (2) that person holds at least `min_agreement` of the
//! usable frames' votes, and (3) the median of that person's distances is
//! within the threshold. A burst whose frames disagree is rejected rather
//! than decided by a single lucky frame; the median ignores one or two
//! outlier frames (a blink, motion blur) in either direction.

use crate::lbph::Match;

/// The parameters of the burst rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstRule {
    pub min_frames: usize,
    pub min_agreement: f64,
    pub threshold: f64,
}

impl BurstRule {
    /// Whether `share` can be a rule's `min_agreement`: more than nothing,
    /// at most every frame.
    pub fn agreement_in_range(share: f64) -> bool {
        share > 0.0 && share <= 1.0
    }
}

impl Default for BurstRule {
    fn default() -> Self {
        Self {
            min_frames: 3,
            min_agreement: 0.6,
            threshold: crate::lbph::DEFAULT_THRESHOLD,
        }
    }
}

/// The outcome of a burst.
#[derive(Debug, Clone, PartialEq)]
pub enum BurstDecision {
    Accepted {
        label: i32,
        distance: f64,
        votes: usize,
        usable: usize,
    },
    TooFewFrames {
        usable: usize,
        needed: usize,
    },
    Disagreement {
        label: i32,
        votes: usize,
        usable: usize,
    },
    NotRecognised {
        label: i32,
        distance: f64,
        threshold: f64,
    },
}

/// Combines the nearest match of each frame (`None` for an unusable frame).
pub fn decide(rule: &BurstRule, frames: &[Option<Match>]) -> BurstDecision {
    let usable: Vec<Match> = frames.iter().flatten().copied().collect();
    if usable.len() < rule.min_frames.max(1) {
        return BurstDecision::TooFewFrames {
            usable: usable.len(),
            needed: rule.min_frames.max(1),
        };
    }
    // Most votes; ties go to the smaller median distance.
    let mut labels: Vec<i32> = usable.iter().map(|m| m.label).collect();
    labels.sort_unstable();
    labels.dedup();
    let (label, mut distances) = labels
        .into_iter()
        .map(|l| {
            (
                l,
                usable
                    .iter()
                    .filter(|m| m.label == l)
                    .map(|m| m.distance)
                    .collect::<Vec<f64>>(),
            )
        })
        .max_by(|(_, a), (_, b)| {
            a.len()
                .cmp(&b.len())
                .then_with(|| median(&mut b.clone()).total_cmp(&median(&mut a.clone())))
        })
        .expect("at least one usable frame");
    let votes = distances.len();
    if (votes as f64) < rule.min_agreement * usable.len() as f64 {
        return BurstDecision::Disagreement {
            label,
            votes,
            usable: usable.len(),
        };
    }
    let distance = median(&mut distances);
    if distance < rule.threshold {
        BurstDecision::Accepted {
            label,
            distance,
            votes,
            usable: usable.len(),
        }
    } else {
        BurstDecision::NotRecognised {
            label,
            distance,
            threshold: rule.threshold,
        }
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(label: i32, distance: f64) -> Option<Match> {
        Some(Match { label, distance })
    }

    const RULE: BurstRule = BurstRule {
        min_frames: 3,
        min_agreement: 0.6,
        threshold: 50.0,
    };

    #[test]
    fn majority_with_median_distance() {
        let frames = [m(1, 30.0), m(1, 40.0), None, m(2, 10.0), m(1, 35.0)];
        assert_eq!(
            decide(&RULE, &frames),
            BurstDecision::Accepted {
                label: 1,
                distance: 35.0,
                votes: 3,
                usable: 4
            }
        );
    }

    #[test]
    fn disagreeing_burst_is_rejected() {
        let frames = [m(1, 30.0), m(2, 30.0), m(3, 30.0), m(1, 31.0)];
        assert_eq!(
            decide(&RULE, &frames),
            BurstDecision::Disagreement {
                label: 1,
                votes: 2,
                usable: 4
            }
        );
    }

    #[test]
    fn too_few_or_too_far() {
        assert_eq!(
            decide(&RULE, &[m(1, 1.0), None, None]),
            BurstDecision::TooFewFrames {
                usable: 1,
                needed: 3
            }
        );
        let far = [m(1, 60.0), m(1, 70.0), m(1, 20.0)];
        assert_eq!(
            decide(&RULE, &far),
            BurstDecision::NotRecognised {
                label: 1,
                distance: 60.0,
                threshold: 50.0
            }
        );
    }
}

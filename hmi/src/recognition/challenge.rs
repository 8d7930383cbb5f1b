//! The head-turn challenge as the worker runs it for one sign-in attempt:
//! the turn asked for, the landmark track from the first burst frame on,
//! and when the verdict is final. Pure: the worker passes the time in.
//!
//! The track starts on a face that looks at the camera (its yaw cue near
//! 0): a turn is measured from there, so a person who is already looking
//! aside when the burst begins is not judged as turning back the wrong way.

use std::time::Instant;

use vision::embedding::Landmarks;
use vision::liveness::{judge, ChallengeRule, Sample, Turn, Verdict};

/// A face whose yaw cue is under this (in eye distances) looks at the
/// camera well enough to start the track. Not tighter: faces are not
/// symmetric, and some people's frontal pose sits well off 0 (ORL's s11
/// reads −0.05 to −0.11 on all ten photos), so a tight rule would never
/// start their track. Any start pose is safe: the answer is a change of the
/// cue from it, which only a head turning in depth makes.
pub const FACING: f64 = 0.12;

/// Picks the turn to ask for at each attempt; the app's is random, tests
/// fix it.
pub type ChooseTurn = fn() -> Turn;

/// Left or right with equal odds, from the standard library's random
/// hasher keys (no generator crate for one bit a sign-in).
pub fn random_turn() -> Turn {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    if h.finish() & 1 == 0 {
        Turn::Left
    } else {
        Turn::Right
    }
}

/// One attempt's challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    turn: Turn,
    rule: ChallengeRule,
    /// When the first sample was taken.
    start: Option<Instant>,
    track: Vec<Sample>,
}

impl Challenge {
    pub fn new(turn: Turn, rule: ChallengeRule) -> Self {
        Challenge {
            turn,
            rule,
            start: None,
            track: Vec::new(),
        }
    }

    pub fn turn(&self) -> Turn {
        self.turn
    }

    /// Starts over with the same turn (the face was lost).
    pub fn restart(&mut self) {
        self.start = None;
        self.track.clear();
    }

    /// Adds a frame's landmarks seen at `now`; the track starts only on a
    /// face looking at the camera. Whether the frame was taken (the burst
    /// starts with the track).
    pub fn observe(&mut self, now: Instant, landmarks: Landmarks) -> bool {
        let start = match self.start {
            Some(s) => s,
            None if landmarks.yaw_cue().abs() < FACING => *self.start.insert(now),
            None => return false,
        };
        self.track.push(Sample {
            at: now.saturating_duration_since(start),
            landmarks,
        });
        true
    }

    /// The verdict once it can no longer change: answered, turned the
    /// wrong way, too late, or the time is up at `now`. `None` while the
    /// person may still answer.
    pub fn verdict(&self, now: Instant) -> Option<Verdict> {
        let verdict = judge(self.turn, &self.rule, &self.track);
        let time_up = self
            .start
            .is_some_and(|s| now.saturating_duration_since(s) > self.rule.within);
        match verdict {
            Verdict::Answered | Verdict::WrongWay | Verdict::TooLate => Some(verdict),
            Verdict::NoTurn | Verdict::TooFewFrames if time_up => Some(verdict),
            Verdict::NoTurn | Verdict::TooFewFrames => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vision::detect::FaceBox;
    use vision::embedding::Point;

    use super::*;

    /// A face whose nose sits at `nose_x` between eyes at x 30 and 70:
    /// yaw cue (nose_x - 50) / 40.
    fn face(nose_x: f64) -> Landmarks {
        let p = |x, y| Point { x, y };
        Landmarks {
            face: FaceBox {
                x: 0,
                y: 0,
                width: 100,
                height: 100,
            },
            points: [
                p(80.0, 40.0),
                p(60.0, 40.0),
                p(20.0, 40.0),
                p(40.0, 40.0),
                p(nose_x, 70.0),
            ],
        }
    }

    fn run(turn: Turn, noses: &[f64], step: Duration) -> (Vec<bool>, Option<Verdict>) {
        let t0 = Instant::now();
        let mut c = Challenge::new(turn, ChallengeRule::default());
        let taken = noses
            .iter()
            .enumerate()
            .map(|(i, &n)| c.observe(t0 + step * i as u32, face(n)))
            .collect();
        (taken, c.verdict(t0 + step * noses.len() as u32))
    }

    #[test]
    fn the_track_starts_on_a_face_looking_at_the_camera() {
        let step = Duration::from_millis(200);
        // Looking aside first (cue 0.3): skipped, then the turn counts from the front.
        let (taken, verdict) = run(Turn::Left, &[62.0, 50.0, 50.0, 56.0, 57.0], step);
        assert_eq!(taken, [false, true, true, true, true]);
        assert_eq!(verdict, Some(Verdict::Answered));
        let (_, verdict) = run(Turn::Right, &[62.0, 50.0, 50.0, 56.0, 57.0], step);
        assert_eq!(verdict, Some(Verdict::WrongWay));
    }

    #[test]
    fn no_turn_waits_until_the_time_is_up() {
        let t0 = Instant::now();
        let mut c = Challenge::new(Turn::Left, ChallengeRule::default());
        for i in 0..5 {
            c.observe(t0 + Duration::from_millis(100 * i), face(50.0));
        }
        assert_eq!(
            c.verdict(t0 + Duration::from_secs(1)),
            None,
            "may still turn"
        );
        assert_eq!(
            c.verdict(t0 + Duration::from_secs(5)),
            Some(Verdict::NoTurn)
        );
        c.restart();
        assert_eq!(c.verdict(t0 + Duration::from_secs(60)), None, "not started");
        assert!(c.observe(t0, face(50.0)));
    }

    #[test]
    fn a_turn_after_the_limit_is_too_late() {
        let (_, verdict) = run(
            Turn::Right,
            &[50.0, 50.0, 44.0, 43.0],
            Duration::from_millis(1500),
        );
        assert_eq!(verdict, Some(Verdict::TooLate));
    }
}

//! The head-turn challenge as the worker runs it for one sign-in attempt:
//! the turn asked for and when its arrow appears (both random), the
//! landmark track from the first burst frame on, and when the verdict is
//! final. Pure: the worker passes the time and the randomness in.
//!
//! The track starts on a face that looks at the camera (its yaw cue near
//! 0): a turn is measured from there, so a person who is already looking
//! aside when the burst begins is not judged as turning back the wrong way.

use std::time::{Duration, Instant};

use vision::embedding::Landmarks;
use vision::liveness::{judge, ChallengeRule, Sample, Turn, Verdict};

/// A face whose yaw cue is under this (in eye distances) looks at the
/// camera well enough to start the track. Not tighter: faces are not
/// symmetric, and some people's frontal pose sits well off 0 (ORL's s11
/// reads −0.05 to −0.11 on all ten photos), so a tight rule would never
/// start their track. Any start pose is safe: the answer is a change of the
/// cue from it, which only a head turning in depth makes.
pub const FACING: f64 = 0.12;

/// What one attempt asks: which way to turn, and how long after the track
/// starts the arrow appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub turn: Turn,
    /// Until then the person looks at the camera; a turn before it is too
    /// early (a sequence prepared in advance cannot know when to turn).
    pub after: Duration,
}

/// The range [`random_ask`] draws the arrow's delay from.
pub const DELAY: std::ops::Range<Duration> =
    Duration::from_millis(500)..Duration::from_millis(2000);

/// Picks each attempt's ask; the app's is [`random_ask`], tests fix it.
pub type ChooseAsk = fn() -> Ask;

/// Left or right with equal odds and a delay uniform in [`DELAY`], from
/// the operating system's CSPRNG (`getrandom`): neither can be predicted
/// from earlier sign-ins.
pub fn random_ask() -> Ask {
    let mut bytes = [0u8; 8];
    if let Err(e) = getrandom::getrandom(&mut bytes) {
        // Never seen on the kiosk's systems; the challenge still runs, with
        // the standard library's randomly keyed hasher as the source.
        tracing::error!("no random numbers from the operating system: {e}");
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        bytes = h.finish().to_le_bytes();
    }
    let r = u64::from_le_bytes(bytes);
    let turn = if r & 1 == 0 { Turn::Left } else { Turn::Right };
    let span = (DELAY.end - DELAY.start).as_millis() as u64;
    Ask {
        turn,
        after: DELAY.start + Duration::from_millis((r >> 1) % span),
    }
}

/// One attempt's challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    ask: Ask,
    rule: ChallengeRule,
    /// When the first sample was taken.
    start: Option<Instant>,
    track: Vec<Sample>,
}

impl Challenge {
    pub fn new(ask: Ask, rule: ChallengeRule) -> Self {
        Challenge {
            ask,
            rule,
            start: None,
            track: Vec::new(),
        }
    }

    /// The turn to show at `now`: only once the track has started and the
    /// ask's delay has passed.
    pub fn shown(&self, now: Instant) -> Option<Turn> {
        self.start
            .filter(|s| now.saturating_duration_since(*s) >= self.ask.after)
            .map(|_| self.ask.turn)
    }

    /// Starts over with the same ask (the face was lost).
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
    /// wrong way, too early or too late, a jump, or the time is up at
    /// `now`. `None` while the person may still answer. Whether the face
    /// that answered is the person is the worker's to add
    /// ([`vision::liveness::confirm`]): it knows whom the burst showed.
    pub fn verdict(&self, now: Instant) -> Option<Verdict> {
        let verdict = judge(self.ask.turn, self.ask.after, &self.rule, &self.track);
        let time_up = self
            .start
            .is_some_and(|s| now.saturating_duration_since(s) > self.ask.after + self.rule.within);
        match verdict {
            Verdict::Answered
            | Verdict::WrongWay
            | Verdict::TooLate
            | Verdict::TooEarly
            | Verdict::Jump
            | Verdict::OtherFace => Some(verdict),
            Verdict::NoTurn | Verdict::TooFewFrames if time_up => Some(verdict),
            Verdict::NoTurn | Verdict::TooFewFrames => None,
        }
    }
}

#[cfg(test)]
mod tests {
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

    fn ask(turn: Turn) -> Ask {
        Ask {
            turn,
            after: Duration::ZERO,
        }
    }

    fn run(turn: Turn, noses: &[f64], step: Duration) -> (Vec<bool>, Option<Verdict>) {
        let t0 = Instant::now();
        let mut c = Challenge::new(ask(turn), ChallengeRule::default());
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
        let noses = [62.0, 50.0, 50.0, 53.0, 56.0, 57.0];
        let (taken, verdict) = run(Turn::Left, &noses, step);
        assert_eq!(taken, [false, true, true, true, true, true]);
        assert_eq!(verdict, Some(Verdict::Answered));
        let (_, verdict) = run(Turn::Right, &noses, step);
        assert_eq!(verdict, Some(Verdict::WrongWay));
    }

    #[test]
    fn the_arrow_appears_after_the_delay_and_an_earlier_turn_is_too_early() {
        let t0 = Instant::now();
        let after = Duration::from_millis(800);
        let mut c = Challenge::new(
            Ask {
                turn: Turn::Right,
                after,
            },
            ChallengeRule::default(),
        );
        assert_eq!(c.shown(t0 + after * 2), None, "no track yet");
        let noses = [50.0, 47.0, 44.0, 41.0];
        for (i, n) in noses.into_iter().enumerate() {
            c.observe(t0 + Duration::from_millis(200) * i as u32, face(n));
        }
        assert_eq!(c.shown(t0 + after / 2), None);
        assert_eq!(c.shown(t0 + after), Some(Turn::Right));
        assert_eq!(c.verdict(t0 + after), Some(Verdict::TooEarly));
    }

    #[test]
    fn a_swapped_print_is_a_jump() {
        let (_, verdict) = run(
            Turn::Left,
            &[50.0, 50.0, 50.0, 58.0, 58.0],
            Duration::from_millis(200),
        );
        assert_eq!(verdict, Some(Verdict::Jump));
    }

    #[test]
    fn random_asks_vary_in_turn_and_delay() {
        let asks: Vec<Ask> = (0..64).map(|_| random_ask()).collect();
        assert!(asks.iter().all(|a| DELAY.contains(&a.after)));
        for turn in [Turn::Left, Turn::Right] {
            assert!(asks.iter().any(|a| a.turn == turn), "never {turn:?} in 64");
        }
        let first = asks[0].after;
        assert!(asks.iter().any(|a| a.after != first), "one delay in 64");
    }

    #[test]
    fn no_turn_waits_until_the_time_is_up() {
        let t0 = Instant::now();
        let mut c = Challenge::new(ask(Turn::Left), ChallengeRule::default());
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
            &[50.0, 50.0, 47.0, 44.0, 43.0],
            Duration::from_millis(1500),
        );
        assert_eq!(verdict, Some(Verdict::TooLate));
    }
}

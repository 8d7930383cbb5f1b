//! Steady frame timing for sources that could deliver as fast as they read
//! files: a folder of images or a video file plays as a camera would.

use std::time::{Duration, Instant};

/// Lets one frame through every `1 / fps` seconds.
pub struct Pacer {
    interval: Duration,
    due: Instant,
}

impl Pacer {
    /// `fps` is held to 0.1–120 frames a second (10 when it is not a number).
    pub fn new(fps: f64) -> Self {
        let fps = if fps.is_nan() {
            10.0
        } else {
            fps.clamp(0.1, 120.0)
        };
        Pacer {
            interval: Duration::from_secs_f64(1.0 / fps),
            due: Instant::now(),
        }
    }

    /// Sleeps until the next frame is due. A late frame is not made up
    /// for with a burst: the one after it is a full interval later.
    pub fn wait(&mut self) {
        std::thread::sleep(self.due.saturating_duration_since(Instant::now()));
        self.due = Instant::now().max(self.due) + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_spaced_by_the_interval() {
        let mut pace = Pacer::new(50.0);
        assert_eq!(pace.interval, Duration::from_millis(20));
        let start = Instant::now();
        for _ in 0..4 {
            pace.wait();
        }
        // The first frame is due at once, the next three 20 ms apart.
        assert!(start.elapsed() >= Duration::from_millis(60));
        assert_eq!(Pacer::new(f64::NAN).interval, Duration::from_millis(100));
        assert_eq!(Pacer::new(1e9).interval, Pacer::new(120.0).interval);
    }
}

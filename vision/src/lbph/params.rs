use crate::Error;

/// The accept threshold KubeVision ships: the chi-square distance below which
/// a face counts as the enrolled person.
///
/// OpenCV's default (`f64::MAX`) accepts anyone. This value was calibrated
/// with `kubevision evaluate --aligned --train-per-person 5 --far 0.001` on
/// the ORL faces (photos 1–5 of each person enrolled, 6–10 probing; 200
/// genuine and 7 800 impostor scores): the largest threshold whose
/// false-accept rate stays at or under 0.1 % (measured 0.09 %, with a
/// single-frame false-reject rate of 20 %, which the burst rule and the
/// kiosk's 50-frame enrolment bring down). Plants recalibrate on their own
/// people with the same command and set the result in the kiosk's settings.
pub const DEFAULT_THRESHOLD: f64 = 81.89;

/// LBPH parameters; the defaults are OpenCV's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbphParams {
    /// Radius of the circle the neighbours are sampled on.
    pub radius: u32,
    /// Number of neighbours sampled; a histogram has 2^neighbours bins.
    pub neighbors: u32,
    /// Cells across.
    pub grid_x: u32,
    /// Cells down.
    pub grid_y: u32,
    /// Distances at or above this are "unknown" (OpenCV: `dist < threshold`).
    pub threshold: f64,
}

impl Default for LbphParams {
    fn default() -> Self {
        Self {
            radius: 1,
            neighbors: 8,
            grid_x: 8,
            grid_y: 8,
            threshold: f64::MAX,
        }
    }
}

impl LbphParams {
    /// Rejects parameters OpenCV would misbehave on (it does not check them).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::InvalidParams(m));
        if self.radius == 0 || self.radius > 64 {
            return bad(format!("radius must be 1–64, not {}", self.radius));
        }
        // 2^16 bins a cell is already 4 MiB a template; OpenCV would try 2^31.
        if self.neighbors == 0 || self.neighbors > 16 {
            return bad(format!("neighbors must be 1–16, not {}", self.neighbors));
        }
        if self.grid_x == 0 || self.grid_y == 0 || self.grid_x > 64 || self.grid_y > 64 {
            return bad(format!(
                "grid must be 1–64 cells each way, not {} × {}",
                self.grid_x, self.grid_y
            ));
        }
        if self.threshold.is_nan() || self.threshold <= 0.0 {
            return bad(format!(
                "threshold must be positive, not {}",
                self.threshold
            ));
        }
        Ok(())
    }
}

//! The five landmarks dlib's small shape model finds, and the one number a
//! head-turn challenge reads from them.
//!
//! dlib's order: points 0–1 are the corners of the eye on the image's right
//! (the person's left eye in an unmirrored camera image), 2–3 those of the
//! other eye, 4 the base of the nose.

use crate::detect::FaceBox;

/// A point in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Point {
    fn mid(a: Point, b: Point) -> Point {
        Point {
            x: (a.x + b.x) / 2.0,
            y: (a.y + b.y) / 2.0,
        }
    }
}

/// A face's five landmarks and the box they were found in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Landmarks {
    pub face: FaceBox,
    pub points: [Point; 5],
}

impl Landmarks {
    /// The centre of the eye on the image's left (the person's right eye).
    pub fn image_left_eye(&self) -> Point {
        Point::mid(self.points[2], self.points[3])
    }

    /// The centre of the eye on the image's right (the person's left eye).
    pub fn image_right_eye(&self) -> Point {
        Point::mid(self.points[0], self.points[1])
    }

    pub fn nose(&self) -> Point {
        self.points[4]
    }

    /// Distance between the eye centres, in pixels.
    pub fn interocular(&self) -> f64 {
        let (a, b) = (self.image_left_eye(), self.image_right_eye());
        (b.x - a.x).hypot(b.y - a.y)
    }

    /// Where the nose sits along the eye line: the offset of the base of
    /// the nose from the midpoint of the eyes, projected on the line from
    /// the image-left eye to the image-right eye, in units of the distance
    /// between the eyes. About 0 facing the camera; positive when the nose
    /// has moved towards the image's right, which in an unmirrored camera
    /// image is the person turning to their own left.
    ///
    /// Why this number: moving, scaling or rotating a photo in the image
    /// plane (a hand-held print) changes the points but not this ratio, and
    /// neither does tilting the print about an axis across the eye line. A
    /// head turning in depth does change it, because the nose stands out of
    /// the plane of the eyes.
    pub fn yaw_cue(&self) -> f64 {
        let (a, b) = (self.image_left_eye(), self.image_right_eye());
        let (ax, ay) = (b.x - a.x, b.y - a.y);
        let len2 = ax * ax + ay * ay;
        if len2 <= f64::EPSILON {
            return 0.0;
        }
        let m = Point::mid(a, b);
        let n = self.nose();
        ((n.x - m.x) * ax + (n.y - m.y) * ay) / len2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn similarity(l: &Landmarks, angle: f64, scale: f64, dx: f64, dy: f64) -> Landmarks {
        let (s, c) = angle.sin_cos();
        let mut out = *l;
        for p in out.points.iter_mut() {
            *p = Point {
                x: scale * (c * p.x - s * p.y) + dx,
                y: scale * (s * p.x + c * p.y) + dy,
            };
        }
        out
    }

    #[test]
    fn the_cue_is_zero_facing_and_signed_by_the_turn() {
        assert!(face(50.0).yaw_cue().abs() < 1e-12);
        assert!((face(60.0).yaw_cue() - 0.25).abs() < 1e-12);
        assert!(face(40.0).yaw_cue() < 0.0);
    }

    #[test]
    fn moving_scaling_and_rotating_in_the_image_plane_keep_the_cue() {
        let turned = face(58.0);
        for (angle, scale, dx, dy) in [(0.4, 1.7, 30.0, -12.0), (-1.1, 0.5, -3.0, 90.0)] {
            let moved = similarity(&turned, angle, scale, dx, dy);
            assert!((moved.yaw_cue() - turned.yaw_cue()).abs() < 1e-9);
        }
    }
}

//! Refusing "wolf" templates: one that lies within the accept threshold of
//! many enrolled people would be the nearest match of their sign-ins.
//!
//! The attack (issue 11): a template crafted as the per-bin median of the
//! gallery's templates, with a valid header and cell sums, sits near the
//! middle of every face's cloud. Enrolled, it was the identified operator
//! in 35 of 40 five-frame bursts of other ORL people. An honest face lies
//! within the threshold of at most a few other people (ORL: see the test
//! `tests/poisoning.rs`), so before a change is committed each new template
//! is searched against the gallery and refused when it is closer than the
//! threshold to more than `--max-wolf-matches` other operators.
//!
//! The threshold is the server's accept threshold, but no looser than
//! vision's calibrated one, at which the limit was calibrated: at a looser
//! one honest faces lie near more people (at an accept-all threshold, near
//! everyone). The limit is absolute: honest near neighbours grow with the
//! gallery, so a gallery of thousands should recalibrate it (the ORL
//! figures: 7 of 200 enrolment templates near 1 other person of 39, none
//! near 2).
//!
//! The check runs on the templates of the gallery's recogniser, in its
//! measure and at its calibrated threshold (dlib: 0.48, set for 0.1 % false
//! accepts on ORL, so an honest embedding is near even fewer people). The
//! templates of other kinds an enrollment carries are not matched here:
//! a replica running that recogniser checks nothing about them, so a plant
//! that switches recogniser should treat them as unchecked.

use crate::backend::MatchBackend;
use crate::error::ServiceError;

/// Checks each of `templates` (of the gallery's recogniser; `what(i)`
/// names the i-th for a refusal: "frame 2", "template 0") against the
/// gallery in `backend`. `own`: the label of the operator being changed,
/// which does not count. Refuses the first template within `threshold`
/// (distance below it, OpenCV's rule) of more than `limit` other operators;
/// an operator holding the very same template (distance 0: the same face
/// enrolled again under another id) does not count, and operators at the
/// very same distance (one face under several ids) count once.
pub(super) fn check<T>(
    backend: &dyn MatchBackend<T>,
    templates: &[T],
    what: &dyn Fn(usize) -> String,
    own: Option<i32>,
    threshold: f64,
    limit: usize,
) -> Result<(), ServiceError> {
    // Fewer templates than the limit + 1: no template can be near more.
    let held = backend.template_count();
    if templates.is_empty() || limit >= held {
        return Ok(());
    }
    // limit + 1 others prove a wolf; one more in case `own` is among them.
    let k = (limit + 2).min(held);
    // Operators holding this very template (distance 0) are this face
    // enrolled again under other ids, and operators at exactly the same
    // distance hold one same face under several ids (as a test gallery
    // may): neither is several people the template lies near. So count
    // the distinct distances below the threshold, and say whether some
    // matches were not counted (they may have hidden others among the k).
    let others = |matches: &[vision::lbph::Match]| {
        let mut near: Vec<u64> = matches
            .iter()
            .filter(|m| Some(m.label) != own && m.distance > 0.0 && m.distance < threshold)
            .map(|m| m.distance.to_bits())
            .collect();
        near.sort_unstable();
        near.dedup();
        let within = matches.iter().filter(|m| m.distance < threshold).count();
        let uncounted = within > near.len();
        (near.len(), uncounted)
    };
    let found = backend.search_batch(templates, k)?;
    for (index, matches) in found.iter().enumerate() {
        let (mut near, uncounted) = others(matches);
        // Copies took places among the k: look further (rare).
        if near <= limit && uncounted && matches.len() == k {
            let all = backend.search_batch(std::slice::from_ref(&templates[index]), held)?;
            near = others(&all[0]).0;
        }
        if near > limit {
            // Refused: count them all, for the reason (this search only
            // runs for a refusal).
            let all = backend.search_batch(std::slice::from_ref(&templates[index]), held)?;
            let near = others(&all[0]).0;
            return Err(ServiceError::Wolf {
                what: what(index),
                near,
                limit,
                threshold,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;
    use vision::lbph::{LbphParams, Template};
    use vision::GrayImage;

    fn face(seed: u32) -> Template {
        let image = GrayImage::from_fn(92, 112, |x, y| {
            let v = (x * 7 + y * 13 + seed * 31) ^ (x * y + seed);
            image::Luma([(v % 251) as u8])
        });
        Template::extract(&LbphParams::default(), &image).unwrap()
    }

    /// Names as an enrollment of `frames` frames, then templates, has them.
    fn origin(frames: usize) -> impl Fn(usize) -> String {
        move |i| {
            if i < frames {
                format!("frame {i}")
            } else {
                format!("template {}", i - frames)
            }
        }
    }

    fn gallery(labels: i32) -> CpuBackend {
        let backend = CpuBackend::new(LbphParams::default());
        for label in 0..labels {
            backend
                .update_label(label, vec![face(label as u32)], false)
                .unwrap();
        }
        backend
    }

    #[test]
    fn refuses_a_template_near_more_than_the_limit_and_names_it() {
        let backend = gallery(5);
        let probe = vec![face(100), face(101)];
        // An infinite threshold: every operator is near, and the reason
        // counts them all, not just the limit's worth searched first.
        let err = check(&backend, &probe, &origin(1), None, f64::INFINITY, 3).unwrap_err();
        assert!(
            matches!(&err, ServiceError::Wolf { what, near: 5, limit: 3, .. } if what == "frame 0"),
            "{err:?}"
        );
        assert!(err.to_string().contains("frame 0"), "{err}");
        // The operator being updated does not count: 4 others, limit 4.
        check(&backend, &probe, &origin(1), Some(0), f64::INFINITY, 4).unwrap();
        let err = check(&backend, &probe, &origin(1), Some(0), f64::INFINITY, 2).unwrap_err();
        assert!(matches!(err, ServiceError::Wolf { near: 4, .. }), "{err:?}");
        let err = check(&backend, &probe, &origin(0), Some(0), f64::INFINITY, 3).unwrap_err();
        assert!(err.to_string().contains("template 0"), "{err}");
        // Nobody within a threshold of 0; and a limit at the gallery's size.
        check(&backend, &probe, &origin(1), None, 0.0, 0).unwrap();
        check(&backend, &probe, &origin(1), None, f64::INFINITY, 5).unwrap();
        // Copies of the template itself (one face under several ids) do
        // not count, and do not hide the others.
        let copies = gallery(5);
        for label in 10..20 {
            copies.update_label(label, vec![face(100)], false).unwrap();
        }
        let err = check(&copies, &probe[..1], &origin(0), None, f64::INFINITY, 3).unwrap_err();
        assert!(matches!(err, ServiceError::Wolf { near: 5, .. }), "{err:?}");
        check(&copies, &probe[..1], &origin(0), None, f64::INFINITY, 5).unwrap();
        // An empty gallery refuses nothing.
        check(&gallery(0), &probe, &origin(1), None, f64::INFINITY, 0).unwrap();
    }
}

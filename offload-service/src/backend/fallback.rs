//! A GPU backend with the CPU behind it: if the GPU fails at run time, or
//! the gallery outgrows its memory, matching continues on the CPU for good.
//!
//! Both backends hold the whole gallery (the CPU copy costs host RAM: about
//! 20 KiB a template), so that switching needs no reload from the store and
//! loses no enrolment. Once switched, [`MatchBackend::name`] reports "cpu",
//! which is what `GetGalleryStatus` and the logs then show.

use std::sync::atomic::{AtomicBool, Ordering};

use vision::lbph::{LbphParams, Match, Template};

use super::{BackendError, CpuBackend, MatchBackend};

pub struct FallbackBackend {
    primary: Box<dyn MatchBackend>,
    cpu: CpuBackend,
    failed: AtomicBool,
}

impl FallbackBackend {
    /// `primary` must be empty: both copies are filled through this wrapper.
    pub fn new(primary: Box<dyn MatchBackend>, params: LbphParams) -> Self {
        Self {
            primary,
            cpu: CpuBackend::new(params),
            failed: AtomicBool::new(false),
        }
    }

    /// Whether matching has moved to the CPU.
    pub fn has_fallen_back(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn fall_back(&self, during: &str, error: &BackendError) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            tracing::error!(
                backend = self.primary.name(),
                during,
                %error,
                "the GPU backend failed; matching continues on the CPU backend from now on"
            );
        }
    }
}

impl MatchBackend for FallbackBackend {
    fn name(&self) -> &'static str {
        if self.has_fallen_back() {
            self.cpu.name()
        } else {
            self.primary.name()
        }
    }

    fn update_label(
        &self,
        label: i32,
        templates: Vec<Template>,
        replace: bool,
    ) -> Result<(), BackendError> {
        // The CPU copy first: it checks the templates, and its errors are
        // the request's. After it succeeded, any error of the GPU's leaves
        // the two copies apart, so the CPU takes over.
        let copy = (!self.has_fallen_back()).then(|| templates.clone());
        self.cpu.update_label(label, templates, replace)?;
        if let Some(templates) = copy {
            if let Err(e) = self.primary.update_label(label, templates, replace) {
                self.fall_back("update", &e);
            }
        }
        Ok(())
    }

    fn remove_label(&self, label: i32) {
        self.cpu.remove_label(label);
        if !self.has_fallen_back() {
            // A GPU backend that fails here fails its next call (the trait
            // has no error to return), which then switches.
            self.primary.remove_label(label);
        }
    }

    fn search_batch(&self, probes: &[Template], k: usize) -> Result<Vec<Vec<Match>>, BackendError> {
        if !self.has_fallen_back() {
            match self.primary.search_batch(probes, k) {
                Err(e) if e.is_device_failure() => self.fall_back("search", &e),
                other => return other,
            }
        }
        self.cpu.search_batch(probes, k)
    }

    fn distances_to_label(
        &self,
        probes: &[Template],
        label: i32,
    ) -> Result<Vec<Option<f64>>, BackendError> {
        if !self.has_fallen_back() {
            match self.primary.distances_to_label(probes, label) {
                Err(e) if e.is_device_failure() => self.fall_back("verify", &e),
                other => return other,
            }
        }
        self.cpu.distances_to_label(probes, label)
    }

    fn template_count(&self) -> usize {
        if self.has_fallen_back() {
            self.cpu.template_count()
        } else {
            self.primary.template_count()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;
    use image::GrayImage;

    /// A "GPU" that answers from its own CPU backend until told to fail.
    struct Flaky {
        inner: CpuBackend,
        fail_search: Arc<AtomicBool>,
        fail_update: Arc<AtomicBool>,
        searches: Arc<AtomicUsize>,
    }

    impl MatchBackend for Flaky {
        fn name(&self) -> &'static str {
            "cuda"
        }
        fn update_label(&self, l: i32, t: Vec<Template>, r: bool) -> Result<(), BackendError> {
            if self.fail_update.load(Ordering::SeqCst) {
                return Err(BackendError::OutOfDeviceMemory {
                    templates: 1,
                    needed: 2,
                    available: 1,
                });
            }
            self.inner.update_label(l, t, r)
        }
        fn remove_label(&self, l: i32) {
            self.inner.remove_label(l)
        }
        fn search_batch(&self, p: &[Template], k: usize) -> Result<Vec<Vec<Match>>, BackendError> {
            self.searches.fetch_add(1, Ordering::SeqCst);
            if self.fail_search.load(Ordering::SeqCst) {
                return Err(BackendError::Device("CUDA_ERROR_LAUNCH_FAILED".into()));
            }
            // Answers differ from the CPU's, so the test sees who answered.
            let mut r = self.inner.search_batch(p, k)?;
            r.iter_mut().flatten().for_each(|m| m.distance = -1.0);
            Ok(r)
        }
        fn distances_to_label(
            &self,
            p: &[Template],
            l: i32,
        ) -> Result<Vec<Option<f64>>, BackendError> {
            if self.fail_search.load(Ordering::SeqCst) {
                return Err(BackendError::Device("lost".into()));
            }
            self.inner.distances_to_label(p, l)
        }
        fn template_count(&self) -> usize {
            self.inner.template_count()
        }
    }

    fn face(seed: u32) -> Template {
        let img = GrayImage::from_fn(92, 112, |x, y| {
            image::Luma([((x * 13 + seed) ^ (y * 7 + seed * x)) as u8])
        });
        Template::extract(&LbphParams::default(), &img).unwrap()
    }

    fn flaky() -> (
        FallbackBackend,
        Arc<AtomicBool>,
        Arc<AtomicBool>,
        Arc<AtomicUsize>,
    ) {
        let (fs, fu, n) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let gpu = Flaky {
            inner: CpuBackend::new(LbphParams::default()),
            fail_search: fs.clone(),
            fail_update: fu.clone(),
            searches: n.clone(),
        };
        (
            FallbackBackend::new(Box::new(gpu), LbphParams::default()),
            fs,
            fu,
            n,
        )
    }

    #[test]
    fn a_failing_gpu_hands_over_to_the_cpu_for_good() {
        let (b, fail, _, searches) = flaky();
        b.update_label(1, vec![face(1), face(2)], false).unwrap();
        b.update_label(2, vec![face(3)], false).unwrap();
        assert_eq!(b.name(), "cuda");
        assert_eq!(
            b.search_batch(&[face(3)], 1).unwrap()[0][0].distance,
            -1.0,
            "the GPU answers"
        );

        fail.store(true, Ordering::SeqCst);
        let r = b.search_batch(&[face(3)], 2).unwrap();
        assert_eq!(
            (r[0][0].label, r[0][0].distance),
            (2, 0.0),
            "the CPU answered the failed call"
        );
        assert_eq!(r[0][1].label, 1);
        assert_eq!(b.name(), "cpu");
        assert!(b.has_fallen_back());

        // For good: the GPU is not asked again, even once it would answer.
        fail.store(false, Ordering::SeqCst);
        let before = searches.load(Ordering::SeqCst);
        b.remove_label(2);
        b.update_label(3, vec![face(9)], false).unwrap();
        let r = b.search_batch(&[face(9)], 5).unwrap();
        assert_eq!(searches.load(Ordering::SeqCst), before);
        assert_eq!(r[0].iter().map(|m| m.label).collect::<Vec<_>>(), vec![3, 1]);
        assert_eq!(b.template_count(), 3);
        assert_eq!(
            b.distances_to_label(&[face(9)], 3).unwrap(),
            vec![Some(0.0)]
        );
    }

    #[test]
    fn a_gallery_the_gpu_refuses_stays_whole_on_the_cpu() {
        let (b, _, fail_update, _) = flaky();
        b.update_label(1, vec![face(1)], false).unwrap();
        fail_update.store(true, Ordering::SeqCst);
        b.update_label(2, vec![face(2)], false)
            .expect("the enrolment is not lost");
        assert_eq!(b.name(), "cpu");
        assert_eq!(b.template_count(), 2);
        assert_eq!(b.search_batch(&[face(2)], 1).unwrap()[0][0].label, 2);
    }

    #[test]
    fn request_errors_are_not_gpu_failures() {
        let (b, _, _, _) = flaky();
        b.update_label(1, vec![face(1)], false).unwrap();
        let other = LbphParams {
            grid_x: 4,
            ..LbphParams::default()
        };
        let odd =
            Template::extract(&other, &GrayImage::from_pixel(92, 112, image::Luma([3]))).unwrap();
        assert!(b.update_label(2, vec![odd.clone()], false).is_err());
        assert!(b.search_batch(&[odd], 1).is_err());
        assert_eq!(b.name(), "cuda", "a bad template does not cost the GPU");
        assert_eq!(b.template_count(), 1);
    }
}

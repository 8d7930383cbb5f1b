//! The enrolled templates on their way from the store to the recognisers.
//!
//! The store worker publishes the whole gallery after every change (an
//! enrolment, a deletion, a sync with the plant gallery); each recognition
//! worker picks up the newest one between frames. The UI thread only hands
//! the feed to the workers it starts: no template passes through it, and a
//! recogniser restarted for new settings starts from the current gallery.

use std::sync::{Arc, Mutex};

/// One template and whose it is (the personnel number, the identity used
/// everywhere from the proto to the audit log).
pub type Enrolled = Vec<(String, Vec<u8>)>;

#[derive(Default)]
pub struct GalleryFeed {
    /// Bumped on every publish; 0: nothing published yet.
    latest: Mutex<(u64, Arc<Enrolled>)>,
}

impl GalleryFeed {
    pub fn new() -> Arc<GalleryFeed> {
        Arc::default()
    }

    pub fn publish(&self, gallery: Enrolled) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        *latest = (latest.0 + 1, Arc::new(gallery));
    }

    /// The newest gallery if it is newer than generation `seen`.
    pub fn newer_than(&self, seen: u64) -> Option<(u64, Arc<Enrolled>)> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        (latest.0 > seen).then(|| (latest.0, Arc::clone(&latest.1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_each_new_gallery_once() {
        let feed = GalleryFeed::new();
        assert!(feed.newer_than(0).is_none(), "nothing published");
        feed.publish(vec![("W-1".into(), vec![1])]);
        let (seen, g) = feed.newer_than(0).unwrap();
        assert_eq!(g[0].0, "W-1");
        assert!(feed.newer_than(seen).is_none());
        feed.publish(Vec::new());
        assert!(feed.newer_than(seen).unwrap().1.is_empty());
    }
}

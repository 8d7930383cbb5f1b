//! The recognition worker: takes the newest camera frame, finds the face,
//! publishes a preview (frame, box, quality issue) and, depending on the
//! mode, identifies, verifies or collects enrollment templates. Nothing
//! here runs on the UI thread; results come back over a channel. The
//! gallery comes from the store worker through a [`GalleryFeed`], and
//! captured enrollment templates go to it through the capture sink: the
//! UI hears only that they were captured.

mod backend;
mod fallback;
mod gallery;
mod offload;

use std::sync::Arc;
use std::time::Duration;

pub use backend::{extract, Backend, BackendError, Decision, LocalBackend, LOCAL};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
pub use fallback::{FallbackBackend, FALLBACK_DEADLINE};
pub use gallery::{Enrolled, GalleryFeed};
pub use offload::{OffloadBackend, OFFLOAD};
use vision::burst::BurstRule;
use vision::detect::FaceBox;
use vision::lbph::LbphParams;
use vision::pipeline::{FacePipeline, FrameError};
use vision::quality::QualityIssue;
use vision::GrayImage;

use crate::auth::FaceEvidence;
use crate::camera::{Frame, Mailbox};
use crate::settings::{BackendChoice, Settings};

/// What the worker does with faces.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Preview and quality hints only.
    Watch,
    /// 1:N for face-first sign-in.
    Identify,
    /// 1:1 against one person, after the password.
    Verify { personnel_no: String },
    /// Collect `target` usable templates.
    Enroll { target: usize },
}

pub enum Command {
    SetMode(Mode),
    SetRule(BurstRule),
}

/// The latest frame as the UI should draw it.
#[derive(Clone)]
pub struct Preview {
    pub frame: Frame,
    pub face: Option<FaceBox>,
    pub issue: Option<QualityIssue>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Identified {
        personnel_no: String,
        face: FaceEvidence,
    },
    /// A burst found nobody near enough, or the frames disagreed.
    NotRecognised {
        backend: &'static str,
    },
    Verified {
        matched: bool,
        face: FaceEvidence,
    },
    /// One more enrollment frame used, or one skipped with its reason.
    EnrollProgress {
        captured: usize,
        target: usize,
        skipped: Option<QualityIssue>,
    },
    /// The enrollment's templates went to the capture sink (the store worker).
    EnrollCaptured {
        count: usize,
    },
    /// The pipeline or backend failed; the worker keeps running.
    Failed(String),
}

/// The backend the settings choose.
pub fn create_backend(
    settings: &Settings,
    params: LbphParams,
) -> Result<Box<dyn Backend>, BackendError> {
    let offload = settings.offload_client()?;
    Ok(match (settings.backend, offload) {
        (BackendChoice::Offload, Some(client)) => Box::new(OffloadBackend::connect(client, None)?),
        (BackendChoice::OffloadWithFallback, Some(client)) => {
            Box::new(FallbackBackend::start(client, params, FALLBACK_DEADLINE)?)
        }
        _ => Box::new(LocalBackend::new(params)),
    })
}

/// Where captured enrollment templates go (the store worker's inbox).
pub type CaptureSink = Box<dyn Fn(Vec<Vec<u8>>) + Send>;

/// The worker's links to the store worker, which bypass the UI: the
/// gallery comes in by the feed, captured templates go out by the sink.
pub struct StoreLinks {
    pub gallery: Arc<GalleryFeed>,
    pub capture: CaptureSink,
}

/// Frames per sign-in decision.
pub const BURST: usize = 5;

/// Dropping the worker (or the camera) ends its thread within one frame wait.
pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<Event>,
    previews: Arc<Mailbox<Preview>>,
}

struct State {
    mode: Mode,
    rule: BurstRule,
    params: LbphParams,
    /// The face crops of the burst so far.
    burst: Vec<GrayImage>,
    /// The gallery generation the backend has.
    gallery_seen: u64,
    templates: Vec<Vec<u8>>,
}

impl Worker {
    /// `make_pipeline` runs on the worker thread (loading the cascade takes
    /// a while); when it fails the preview still runs without faces.
    pub fn start(
        frames: Arc<Mailbox<Frame>>,
        make_pipeline: impl FnOnce() -> Result<FacePipeline, vision::Error> + Send + 'static,
        mut backend: Box<dyn Backend>,
        params: LbphParams,
        rule: BurstRule,
        store: StoreLinks,
        wake: impl Fn() + Send + 'static,
    ) -> Worker {
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let (event_tx, events) = crossbeam_channel::unbounded();
        let previews = Arc::new(Mailbox::default());
        {
            let previews = Arc::clone(&previews);
            std::thread::Builder::new()
                .name("recognition".into())
                .spawn(move || {
                    let send_failure = |e: &vision::Error| {
                        tracing::error!("face detector unavailable: {e}");
                        let _ = event_tx.send(Event::Failed(e.to_string()));
                    };
                    let mut pipeline = make_pipeline().inspect_err(send_failure).ok();
                    let mut st = State {
                        mode: Mode::Watch,
                        rule,
                        params,
                        burst: Vec::new(),
                        gallery_seen: 0,
                        templates: Vec::new(),
                    };
                    let send = |e: Event| {
                        let _ = event_tx.send(e);
                        wake();
                    };
                    loop {
                        // Stop when the app drops the worker or the camera goes away.
                        loop {
                            match command_rx.try_recv() {
                                Ok(Command::SetMode(m)) => {
                                    st.mode = m;
                                    st.burst.clear();
                                    st.templates.clear();
                                }
                                Ok(Command::SetRule(r)) => st.rule = r,
                                Err(TryRecvError::Empty) => break,
                                Err(TryRecvError::Disconnected) => return,
                            }
                        }
                        if frames.is_closed() {
                            return;
                        }
                        if let Some((seen, g)) = store.gallery.newer_than(st.gallery_seen) {
                            st.gallery_seen = seen;
                            if let Err(e) = backend.set_gallery(&g) {
                                send(Event::Failed(e.to_string()));
                            }
                        }
                        let Some(frame) = frames.take_timeout(Duration::from_millis(100)) else {
                            continue;
                        };
                        let Some(pipeline) = pipeline.as_mut() else {
                            previews.put(Preview {
                                frame,
                                face: None,
                                issue: None,
                            });
                            wake();
                            continue;
                        };
                        let result = pipeline.process(&frame.image);
                        let (face, issue) = match &result {
                            Ok(f) => (Some(f.face), None),
                            Err(FrameError::Quality(q)) => (None, Some(q.clone())),
                            Err(FrameError::Vision(e)) => {
                                send(Event::Failed(e.to_string()));
                                (None, None)
                            }
                        };
                        previews.put(Preview {
                            frame,
                            face,
                            issue: issue.clone(),
                        });
                        wake();
                        match result {
                            Ok(f) => {
                                if let Some(e) =
                                    st.use_face(f.crop, backend.as_mut(), &store.capture)
                                {
                                    send(e);
                                }
                            }
                            Err(_) => {
                                if let Some(e) = st.skip(issue) {
                                    send(e);
                                }
                            }
                        }
                    }
                })
                .expect("spawning the recognition thread");
        }
        Worker {
            commands,
            events,
            previews,
        }
    }

    pub fn send(&self, command: Command) {
        // A worker that stopped (camera gone) has nothing left to do with it.
        let _ = self.commands.send(command);
    }

    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        self.events.try_iter()
    }

    pub fn preview(&self) -> Option<Preview> {
        self.previews.try_take()
    }
}

impl State {
    fn evidence(&self, distance: f64, backend: &dyn Backend) -> FaceEvidence {
        FaceEvidence {
            distance,
            backend: backend.name(),
            live: vision::liveness::is_moving(&self.burst),
        }
    }

    /// A frame with a usable face.
    fn use_face(
        &mut self,
        crop: GrayImage,
        backend: &mut dyn Backend,
        capture: &CaptureSink,
    ) -> Option<Event> {
        match self.mode.clone() {
            Mode::Watch => None,
            Mode::Enroll { target } => {
                if self.templates.len() >= target {
                    return None;
                }
                match extract(&self.params, &crop) {
                    Ok(t) => self.templates.push(t),
                    Err(e) => return Some(Event::Failed(e.to_string())),
                }
                if self.templates.len() == target {
                    self.mode = Mode::Watch;
                    capture(std::mem::take(&mut self.templates));
                    Some(Event::EnrollCaptured { count: target })
                } else {
                    Some(Event::EnrollProgress {
                        captured: self.templates.len(),
                        target,
                        skipped: None,
                    })
                }
            }
            Mode::Identify => {
                self.burst.push(crop);
                if self.burst.len() < BURST {
                    return None;
                }
                let event = match backend.identify(&self.burst, &self.rule) {
                    Ok(Decision {
                        accepted: Some(personnel_no),
                        distance,
                    }) => Event::Identified {
                        personnel_no,
                        face: self.evidence(distance, backend),
                    },
                    Ok(_) => Event::NotRecognised {
                        backend: backend.name(),
                    },
                    Err(e) => Event::Failed(e.to_string()),
                };
                self.burst.clear();
                Some(event)
            }
            Mode::Verify { personnel_no } => {
                self.burst.push(crop);
                if self.burst.len() < BURST {
                    return None;
                }
                let decision = backend.verify(&self.burst, &personnel_no, &self.rule);
                let event = match decision {
                    Ok(d) => {
                        // One decision per request: the auth machine moves on.
                        self.mode = Mode::Watch;
                        Event::Verified {
                            matched: d.accepted.is_some(),
                            face: self.evidence(d.distance, backend),
                        }
                    }
                    // The next burst tries again (the second-factor timeout ends it).
                    Err(e) => Event::Failed(e.to_string()),
                };
                self.burst.clear();
                Some(event)
            }
        }
    }
    /// A frame without a usable face.
    fn skip(&mut self, issue: Option<QualityIssue>) -> Option<Event> {
        match self.mode {
            Mode::Enroll { target } if self.templates.len() < target => {
                Some(Event::EnrollProgress {
                    captured: self.templates.len(),
                    target,
                    skipped: issue,
                })
            }
            // The person left or looked away: a burst is consecutive frames of one face.
            Mode::Identify | Mode::Verify { .. } if matches!(issue, Some(QualityIssue::NoFace)) => {
                self.burst.clear();
                None
            }
            _ => None,
        }
    }
}

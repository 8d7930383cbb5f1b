//! The recognition worker: takes the newest camera frame, finds the face,
//! publishes a preview (frame, box, quality issue) and, depending on the
//! mode, identifies, verifies or collects enrollment templates. Nothing
//! here runs on the UI thread; results come back over a channel.

mod backend;
mod fallback;
pub mod liveness;
mod offload;
mod sync;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use backend::{extract, Backend, BackendError, LocalBackend, LOCAL};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
pub use fallback::{FallbackBackend, FallbackConfig};
pub use offload::{client_config, OffloadBackend, OFFLOAD};
pub use sync::SyncPolicy;
use vision::burst::{decide, BurstDecision, BurstRule};
use vision::detect::FaceBox;
use vision::lbph::{LbphParams, Match};
use vision::pipeline::{FacePipeline, FrameError};
use vision::quality::QualityIssue;
use vision::GrayImage;

use crate::auth::FaceEvidence;
use crate::camera::{Frame, Mailbox};
use crate::settings::{BackendChoice, Settings};
use crate::store::Secrets;

/// What the worker does with faces.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Preview and quality hints only.
    Watch,
    /// 1:N for face-first sign-in.
    Identify,
    /// 1:1 against one label, after the password.
    Verify { label: i32 },
    /// Collect `target` usable templates.
    Enroll { target: usize },
}

pub enum Command {
    SetMode(Mode),
    SetGallery(Vec<(i32, Vec<u8>)>),
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
        label: i32,
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
    EnrollCaptured {
        templates: Vec<Vec<u8>>,
    },
    /// The pipeline or backend failed; the worker keeps running.
    Failed(String),
}

/// The backend the settings choose; `db` is the kiosk's store file
/// (personnel numbers, the offline queue, the local copy of the gallery).
pub fn create_backend(
    settings: &Settings,
    db: &Path,
    secrets: &Secrets,
    params: LbphParams,
) -> Result<Box<dyn Backend>, BackendError> {
    Ok(match settings.backend {
        BackendChoice::Local => Box::new(LocalBackend::new(params)),
        BackendChoice::Offload => Box::new(OffloadBackend::connect(
            client_config(settings)?,
            db,
            secrets,
            None,
            SyncPolicy::default(),
        )?),
        BackendChoice::OffloadWithFallback => Box::new(FallbackBackend::start(
            client_config(settings)?,
            db,
            secrets,
            params,
            FallbackConfig::default(),
        )?),
    })
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
    /// Per frame with a face: crop and nearest match (or verify distance).
    burst: Vec<(GrayImage, Option<Match>)>,
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
                                Ok(Command::SetGallery(g)) => {
                                    if let Err(e) = backend.set_gallery(&g) {
                                        send(Event::Failed(e.to_string()));
                                    }
                                }
                                Ok(Command::SetRule(r)) => st.rule = r,
                                Err(TryRecvError::Empty) => break,
                                Err(TryRecvError::Disconnected) => return,
                            }
                        }
                        if frames.is_closed() {
                            return;
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
                                if let Some(e) = st.use_face(f.crop, backend.as_mut()) {
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
        let crops: Vec<GrayImage> = self.burst.iter().map(|(c, _)| c.clone()).collect();
        FaceEvidence {
            distance,
            backend: backend.name(),
            live: liveness::is_live(&crops),
        }
    }

    /// A frame with a usable face.
    fn use_face(&mut self, crop: GrayImage, backend: &mut dyn Backend) -> Option<Event> {
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
                    Some(Event::EnrollCaptured {
                        templates: std::mem::take(&mut self.templates),
                    })
                } else {
                    Some(Event::EnrollProgress {
                        captured: self.templates.len(),
                        target,
                        skipped: None,
                    })
                }
            }
            Mode::Identify => {
                let m = match backend.identify(&crop) {
                    Ok(m) => m,
                    Err(e) => return Some(Event::Failed(e.to_string())),
                };
                self.burst.push((crop, m));
                (self.burst.len() >= BURST).then(|| {
                    let matches: Vec<Option<Match>> = self.burst.iter().map(|(_, m)| *m).collect();
                    let event = match decide(&self.rule, &matches) {
                        BurstDecision::Accepted {
                            label, distance, ..
                        } => Event::Identified {
                            label,
                            face: self.evidence(distance, backend),
                        },
                        _ => Event::NotRecognised {
                            backend: backend.name(),
                        },
                    };
                    self.burst.clear();
                    event
                })
            }
            Mode::Verify { label } => {
                let d = match backend.verify(&crop, label) {
                    Ok(d) => d,
                    Err(e) => return Some(Event::Failed(e.to_string())),
                };
                self.burst
                    .push((crop, d.map(|distance| Match { label, distance })));
                (self.burst.len() >= BURST).then(|| {
                    let matches: Vec<Option<Match>> = self.burst.iter().map(|(_, m)| *m).collect();
                    let (matched, distance) = match decide(&self.rule, &matches) {
                        BurstDecision::Accepted { distance, .. } => (true, distance),
                        BurstDecision::NotRecognised { distance, .. } => (false, distance),
                        _ => (false, f64::INFINITY),
                    };
                    let face = self.evidence(distance, backend);
                    self.burst.clear();
                    // One decision per request: the auth machine moves on.
                    self.mode = Mode::Watch;
                    Event::Verified { matched, face }
                })
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

//! The recognition worker: takes the newest camera frame, finds the face,
//! publishes a preview (frame, box, quality issue, the head turn asked
//! for) and, depending on the mode, identifies, verifies or collects
//! enrollment templates. Nothing here runs on the UI thread; results come
//! back over a channel. The gallery comes from the store worker through a
//! [`GalleryFeed`], and captured enrollment templates go to it through the
//! capture sink: the UI hears only that they were captured.
//!
//! The active recogniser ([`Recogniser::kind`]) makes the per-frame
//! probes: lbph matches the crop, dlib an embedding of the frame. An
//! enrollment makes templates of every kind the kiosk can from the same
//! frames, so switching recognisers needs no re-enrollment. dlib's models
//! also give the landmarks the head-turn challenge ([`challenge`]) reads,
//! whichever recogniser is active.

mod backend;
pub mod challenge;
mod fallback;
mod gallery;
mod offload;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use backend::{Backend, BackendError, Decision, LocalBackend, Probe, LOCAL};
use challenge::{Challenge, ChooseAsk};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
pub use fallback::{FallbackBackend, FALLBACK_DEADLINE};
pub use gallery::{Enrolled, GalleryFeed};
pub use offload::{OffloadBackend, OFFLOAD};
use vision::burst::BurstRule;
use vision::detect::FaceBox;
use vision::embedding::{DlibFrame, Embedder, Embedding, Landmarks};
use vision::lbph::LbphParams;
use vision::liveness::{ChallengeRule, Turn, Verdict};
use vision::pipeline::{Face, FacePipeline, FrameError};
use vision::quality::QualityIssue;
use vision::recogniser::Kind;
use vision::template::{locate, templates_of_face, AnyTemplate};
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
    /// 1:1 against one person: after the password (a sign-in, with the
    /// head-turn challenge when it is on), or to check a new enrollment.
    Verify {
        personnel_no: String,
        challenge: bool,
    },
    /// Collect `target` usable templates.
    Enroll { target: usize },
}

pub enum Command {
    SetMode(Mode),
    SetRule(BurstRule),
}

/// How the worker recognises: which recogniser makes the probes, and
/// whether it asks for a head turn (when dlib's landmark model is there).
#[derive(Debug, Clone, Copy)]
pub struct Recogniser {
    pub kind: Kind,
    /// lbph's parameters (its templates and probes).
    pub lbph: LbphParams,
    pub head_turn: bool,
    /// Picks each attempt's turn and when its arrow appears:
    /// [`challenge::random_ask`] in the kiosk.
    pub choose_ask: ChooseAsk,
}

/// The latest frame as the UI should draw it.
#[derive(Clone)]
pub struct Preview {
    pub frame: Frame,
    pub face: Option<FaceBox>,
    pub issue: Option<QualityIssue>,
    /// The head turn asked for now, while a face is being checked.
    pub challenge: Option<Turn>,
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
        /// The head-turn challenge's verdict, when one was asked.
        challenge: Option<Verdict>,
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

/// The backend the settings choose, for their recogniser.
pub fn create_backend(
    settings: &Settings,
    params: LbphParams,
) -> Result<Box<dyn Backend>, BackendError> {
    let offload = settings.offload_client()?;
    let kind = settings.recogniser;
    Ok(match (settings.backend, offload) {
        (BackendChoice::Offload, Some(client)) => {
            Box::new(OffloadBackend::connect(client, None, kind)?)
        }
        (BackendChoice::OffloadWithFallback, Some(client)) => Box::new(FallbackBackend::start(
            client,
            kind,
            params,
            FALLBACK_DEADLINE,
        )?),
        _ => Box::new(LocalBackend::new(kind, params)),
    })
}

/// Whether this kiosk can run dlib (both model files are there and
/// intact), else why not, in words. Reads and hashes the model files: not
/// for the UI thread.
pub fn dlib_models() -> Result<(), String> {
    for file in vision::embedding::models::ModelFile::ALL {
        vision::embedding::models::locate(file).map_err(|e| e.to_string())?;
    }
    Ok(())
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

/// dlib's models on the worker thread, loaded on first need (about 0.5 s).
enum Models {
    Untried,
    Ready(Box<Embedder>),
    Missing(String),
}

/// What dlib makes of one frame's face.
struct DlibFace {
    landmarks: Landmarks,
    embedding: Option<Embedding>,
}

struct State {
    mode: Mode,
    rule: BurstRule,
    recogniser: Recogniser,
    models: Models,
    /// The probes of the burst so far.
    burst: Vec<Probe>,
    /// The current attempt's head-turn challenge, while one is asked.
    challenge: Option<Challenge>,
    /// The probe of every frame the challenge's track took (the burst's
    /// first): each is checked on its own as the person the burst showed.
    tracked: Vec<Probe>,
    /// The gallery generation the backend has.
    gallery_seen: u64,
    /// An enrollment's templates so far (every kind), and its frames.
    templates: Vec<Vec<u8>>,
    enrolled_frames: usize,
}

impl Worker {
    /// `make_pipeline` runs on the worker thread (loading the cascade takes
    /// a while); when it fails the preview still runs without faces.
    pub fn start(
        frames: Arc<Mailbox<Frame>>,
        make_pipeline: impl FnOnce() -> Result<FacePipeline, vision::Error> + Send + 'static,
        mut backend: Box<dyn Backend>,
        rule: BurstRule,
        recogniser: Recogniser,
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
                        recogniser,
                        models: Models::Untried,
                        burst: Vec::new(),
                        challenge: None,
                        tracked: Vec::new(),
                        gallery_seen: 0,
                        templates: Vec::new(),
                        enrolled_frames: 0,
                    };
                    let send = |e: Event| {
                        let _ = event_tx.send(e);
                        wake();
                    };
                    // The recogniser or the challenge needs dlib's models from the start.
                    if recogniser.kind == Kind::Dlib || recogniser.head_turn {
                        st.embedder();
                        if let (Kind::Dlib, Models::Missing(e)) = (recogniser.kind, &st.models) {
                            send(Event::Failed(format!("dlib recogniser unavailable: {e}")));
                        }
                    }
                    loop {
                        // Stop when the app drops the worker or the camera goes away.
                        loop {
                            match command_rx.try_recv() {
                                Ok(Command::SetMode(m)) => st.set_mode(m),
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
                                challenge: None,
                            });
                            wake();
                            continue;
                        };
                        let result = pipeline.process(&frame.image);
                        let now = Instant::now();
                        let (face, issue) = match &result {
                            Ok(f) => (Some(f.face), None),
                            Err(FrameError::Quality(q)) => (None, Some(q.clone())),
                            Err(FrameError::Vision(e)) => {
                                send(Event::Failed(e.to_string()));
                                (None, None)
                            }
                        };
                        previews.put(Preview {
                            frame: frame.clone(),
                            face,
                            issue: issue.clone(),
                            challenge: st.challenge.as_ref().and_then(|c| c.shown(now)),
                        });
                        wake();
                        match result {
                            Ok(f) => {
                                let used = st.use_face(
                                    &frame.image,
                                    f,
                                    now,
                                    backend.as_mut(),
                                    &store.capture,
                                );
                                if let Some(e) = used {
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
    /// dlib's models, loaded on the first call; `None` when they are missing.
    fn embedder(&mut self) -> Option<&Embedder> {
        self.load_models();
        self.models()
    }

    fn load_models(&mut self) {
        if matches!(self.models, Models::Untried) {
            self.models = match Embedder::load() {
                Ok(e) => Models::Ready(Box::new(e)),
                Err(e) => {
                    tracing::warn!("dlib's models unavailable: {e}");
                    Models::Missing(e.to_string())
                }
            };
        }
    }

    fn models(&self) -> Option<&Embedder> {
        match &self.models {
            Models::Ready(e) => Some(e.as_ref()),
            Models::Untried | Models::Missing(_) => None,
        }
    }

    /// The face's landmarks and, if `embed`, its embedding; `None` without
    /// the models.
    fn dlib_face(
        &mut self,
        frame: &GrayImage,
        face: FaceBox,
        embed: bool,
    ) -> Option<Result<DlibFace, vision::Error>> {
        let embedder = self.embedder()?;
        let frame = DlibFrame::new(frame);
        let located = locate(embedder, &frame, face);
        let embedding = embed.then(|| embedder.embed(&frame, &located)).transpose();
        Some(embedding.map(|embedding| DlibFace {
            landmarks: located.landmarks,
            embedding,
        }))
    }

    /// A new attempt's challenge, when the settings ask for one and the
    /// landmark model is there.
    fn new_challenge(&mut self) -> Option<Challenge> {
        if !self.recogniser.head_turn || self.embedder().is_none() {
            return None;
        }
        let ask = (self.recogniser.choose_ask)();
        Some(Challenge::new(ask, ChallengeRule::default()))
    }

    fn set_mode(&mut self, mode: Mode) {
        self.burst.clear();
        self.tracked.clear();
        self.templates.clear();
        self.enrolled_frames = 0;
        self.challenge = match mode {
            Mode::Identify
            | Mode::Verify {
                challenge: true, ..
            } => self.new_challenge(),
            Mode::Verify { .. } | Mode::Watch | Mode::Enroll { .. } => None,
        };
        self.mode = mode;
    }

    /// Evidence for the burst decided now: live when it moved and, when a
    /// challenge was asked, answered it.
    fn evidence(
        &self,
        distance: f64,
        backend: &dyn Backend,
        moving: bool,
        verdict: Option<Verdict>,
    ) -> FaceEvidence {
        let answered = self.challenge.is_none() || verdict == Some(Verdict::Answered);
        FaceEvidence {
            distance,
            backend: backend.name(),
            live: moving && answered,
            challenge: verdict,
        }
    }

    /// The challenge's verdict once the face that answered it is checked
    /// (`vision::liveness::confirm`): an answer stands only when every
    /// tracked frame, the turned ones too, is accepted on its own as
    /// `personnel_no` by the backend that decided the burst, with the same
    /// rule and threshold (one frame being the whole burst).
    fn confirm(
        &self,
        backend: &mut dyn Backend,
        personnel_no: Option<&str>,
        verdict: Option<Verdict>,
    ) -> Result<Option<Verdict>, BackendError> {
        let (Some(Verdict::Answered), Some(personnel_no)) = (verdict, personnel_no) else {
            return Ok(verdict);
        };
        let one_frame = BurstRule {
            min_frames: 1,
            ..self.rule
        };
        let verified = self
            .tracked
            .iter()
            .map(|p| {
                let d = backend.verify(std::slice::from_ref(p), personnel_no, &one_frame)?;
                Ok(d.accepted.is_some())
            })
            .collect::<Result<Vec<bool>, BackendError>>()?;
        Ok(Some(vision::liveness::confirm(
            Verdict::Answered,
            &verified,
        )))
    }

    /// A frame with a usable face.
    fn use_face(
        &mut self,
        frame: &GrayImage,
        face: Face,
        now: Instant,
        backend: &mut dyn Backend,
        capture: &CaptureSink,
    ) -> Option<Event> {
        match self.mode.clone() {
            Mode::Watch => None,
            Mode::Enroll { target } => self.enroll(frame, face, target, capture),
            Mode::Identify | Mode::Verify { .. } => self.check(frame, face, now, backend),
        }
    }

    /// Enrollment: an lbph template from the crop and, with dlib's models,
    /// a dlib one from the frame, for each usable frame.
    fn enroll(
        &mut self,
        frame: &GrayImage,
        face: Face,
        target: usize,
        capture: &CaptureSink,
    ) -> Option<Event> {
        if self.enrolled_frames >= target {
            return None;
        }
        self.load_models();
        match templates_of_face(&self.recogniser.lbph, self.models(), frame, &face) {
            Ok(t) => self.templates.extend(t.iter().map(AnyTemplate::to_bytes)),
            Err(e) => return Some(Event::Failed(BackendError::from(e).to_string())),
        }
        self.enrolled_frames += 1;
        if self.enrolled_frames == target {
            self.mode = Mode::Watch;
            self.enrolled_frames = 0;
            capture(std::mem::take(&mut self.templates));
            Some(Event::EnrollCaptured { count: target })
        } else {
            Some(Event::EnrollProgress {
                captured: self.enrolled_frames,
                target,
                skipped: None,
            })
        }
    }

    /// Identification or verification: the burst's probes, the challenge's
    /// track, and one decision when both are complete.
    fn check(
        &mut self,
        frame: &GrayImage,
        face: Face,
        now: Instant,
        backend: &mut dyn Backend,
    ) -> Option<Event> {
        // With a challenge every tracked frame is embedded: each is checked
        // as the person, the turned ones too.
        let embed = self.recogniser.kind == Kind::Dlib
            && (self.burst.len() < BURST || self.challenge.is_some());
        let dlib = if embed || self.challenge.is_some() {
            match self.dlib_face(frame, face.face, embed) {
                Some(Ok(f)) => Some(f),
                Some(Err(e)) => return Some(Event::Failed(e.to_string())),
                // dlib chosen without its models: said once at the start.
                None if embed => return None,
                None => None,
            }
        } else {
            None
        };
        let (landmarks, embedding) = match dlib {
            Some(f) => (Some(f.landmarks), f.embedding),
            None => (None, None),
        };
        let probe = Probe {
            crop: face.crop,
            embedding,
        };
        if let (Some(challenge), Some(landmarks)) = (&mut self.challenge, landmarks) {
            if !challenge.observe(now, landmarks) {
                return None; // the burst starts on a face looking at the camera
            }
            self.tracked.push(probe.clone());
        }
        if self.burst.len() < BURST {
            self.burst.push(probe);
        }
        if self.burst.len() < BURST {
            return None;
        }
        let crops: Vec<GrayImage> = self.burst.iter().map(|p| p.crop.clone()).collect();
        // The motion check is the first gate: a still image needs no challenge.
        let moving = vision::liveness::is_moving(&crops);
        let verdict = match &self.challenge {
            None => None,
            Some(c) => match c.verdict(now) {
                None if moving => return None, // the person may still turn
                v => v,
            },
        };
        let event = match self.mode.clone() {
            Mode::Verify { personnel_no, .. } => {
                let decided = backend
                    .verify(&self.burst, &personnel_no, &self.rule)
                    .and_then(|d| {
                        let verdict = self.confirm(backend, d.accepted.as_deref(), verdict)?;
                        Ok((d, verdict))
                    });
                match decided {
                    Ok((d, verdict)) => {
                        // One decision per request: the auth machine moves on.
                        self.mode = Mode::Watch;
                        Event::Verified {
                            matched: d.accepted.is_some(),
                            face: self.evidence(d.distance, backend, moving, verdict),
                        }
                    }
                    // The next burst tries again (the second-factor timeout ends it).
                    Err(e) => Event::Failed(e.to_string()),
                }
            }
            _ => match backend.identify(&self.burst, &self.rule) {
                Ok(Decision {
                    accepted: Some(personnel_no),
                    distance,
                }) => match self.confirm(backend, Some(&personnel_no), verdict) {
                    Ok(verdict) => Event::Identified {
                        face: self.evidence(distance, backend, moving, verdict),
                        personnel_no,
                    },
                    Err(e) => Event::Failed(e.to_string()),
                },
                Ok(_) => Event::NotRecognised {
                    backend: backend.name(),
                    challenge: verdict,
                },
                Err(e) => Event::Failed(e.to_string()),
            },
        };
        self.burst.clear();
        self.tracked.clear();
        // The next attempt asks again (identification goes on; a
        // verification that failed to decide tries again).
        if self.challenge.is_some() {
            self.challenge = self.new_challenge();
        }
        if self.mode == Mode::Watch {
            self.challenge = None;
        }
        Some(event)
    }

    /// A frame without a usable face.
    fn skip(&mut self, issue: Option<QualityIssue>) -> Option<Event> {
        match self.mode {
            Mode::Enroll { target } if self.enrolled_frames < target => {
                Some(Event::EnrollProgress {
                    captured: self.enrolled_frames,
                    target,
                    skipped: issue,
                })
            }
            // The person left or looked away: a burst is consecutive frames of one face.
            Mode::Identify | Mode::Verify { .. } if matches!(issue, Some(QualityIssue::NoFace)) => {
                self.burst.clear();
                self.tracked.clear();
                if let Some(c) = &mut self.challenge {
                    c.restart();
                }
                None
            }
            _ => None,
        }
    }
}

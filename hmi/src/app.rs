//! The kiosk application: routes worker replies into the sign-in state
//! machine and the current screen, and draws the frame. Everything slow
//! (camera, recognition, store) runs on the workers; this thread only
//! polls their channels.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use eframe::egui::{self, ColorImage, RichText, TextureHandle, TextureOptions};

use crate::auth::{AuthMachine, AuthState, Effect, FaceEvidence};
use crate::camera::{file_source, Camera, CameraStatus, DeviceSource, FrameSource};
use crate::cluster_worker::ClusterWorker;
use crate::i18n::{Language, T};
use crate::line_link::{self, CertificateList, LineLink, LineStatus};
use crate::recognition::challenge::ChooseAsk;
use crate::recognition::{self, Command, Event, GalleryFeed, Mode, Preview, Recogniser, Worker};
use crate::screens::{self, Action, Nav, Screen};
use crate::settings::Settings;
use crate::store::{now_millis, Millis, Operator, Role, Secrets, Store, StoreError};
use crate::store_worker::{self, PlantStatus, StoreWorker, SyncPolicy};
use crate::theme;
use crate::widgets::face_guide::{self, GuideState, Overlay};
use crate::widgets::icons;
use crate::widgets::status_bar::{self, Item};
use vision::liveness::Verdict;
use vision::quality::QualityIssue;

/// How long the status bar says which settings were applied.
const APPLIED_SHOWN_MS: Millis = 6_000;
/// How long the preview says why a head turn did not count.
const CHALLENGE_HINT_MS: Millis = 3_000;

/// Set first thing in `main`; the "sign-in screen ready" log line measures cold start from it.
pub static PROCESS_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// How the kiosk was started.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// A folder of images or a video file to play as the camera; `None`: the settings' camera.
    pub camera: Option<PathBuf>,
    pub camera_fps: f64,
    /// Where the audit key, the PIN pepper and the audit anchor live;
    /// `None`: `secrets/` in the data directory.
    pub secrets_dir: Option<PathBuf>,
    /// How often the store worker syncs with the plant gallery.
    pub sync: SyncPolicy,
    /// The OPC UA address from the configuration file (`[opcua] listen`),
    /// over the settings' `line.listen`: plant IT's choice.
    pub opcua_listen: Option<String>,
    /// Picks the head turn each sign-in asks for, and when:
    /// [`recognition::challenge::random_ask`], or a fixed one in tests.
    pub choose_ask: ChooseAsk,
}

/// What the screens draw from: the sign-in state, the settings, the
/// operators and what the workers last said. No worker handles: screens
/// read this and ask for changes by [`Action`].
pub struct Kiosk {
    pub settings: Settings,
    pub auth: AuthMachine,
    pub operators: Vec<Operator>,
    pub data_dir: PathBuf,
    /// The store's keys, for the recogniser's connection to the store.
    secrets: Secrets,
    /// The last store or recogniser failure, shown in the status bar.
    pub error: Option<String>,
    /// A face the recogniser named, waiting for the store to say whose it is.
    pending_face: Option<FaceEvidence>,
    /// When a burst last found nobody, for the idle screen's hint.
    pub not_recognised_at: Option<Millis>,
    /// Why the last head turn did not count, and when, for the preview's hint.
    challenge_failed: Option<(Verdict, Millis)>,
    /// Which backend answered last, for the badge.
    last_backend: Option<&'static str>,
    /// How the last plant sync went; `None` until the store worker says.
    pub plant: Option<PlantStatus>,
    /// What the last settings change restarted, and when, for the status bar.
    pub applied: Option<(T, Millis)>,
    /// The OPC UA server that tells the line who is signed in.
    pub line: LineStatus,
    /// Its address when the configuration file fixes it.
    pub line_listen_fixed: Option<String>,
    camera_status: CameraStatus,
    preview: Option<(Preview, TextureHandle)>,
}

/// The workers the app feeds and polls; screens never see them.
struct Workers {
    store: StoreWorker,
    recognition: Option<Worker>,
    /// The mode the recogniser was last told.
    mode: Option<Mode>,
    camera: Option<Camera>,
    /// `--camera`: overrides the settings' camera.
    camera_folder: Option<PathBuf>,
    camera_fps: f64,
    /// The store worker's gallery, handed to every recogniser started
    /// (the UI never reads it).
    gallery: Arc<GalleryFeed>,
    /// The cluster panel's worker, from its first request on.
    cluster: Option<ClusterWorker>,
    /// The camera list under way for the settings screen.
    cameras: Option<Receiver<crate::camera::CameraList>>,
    /// Tells the line who is signed in (OPC UA).
    line: LineLink,
    /// The rejected OPC UA client certificates under way for the line screen.
    certificates: Option<Receiver<CertificateList>>,
    /// The dlib model check under way for the settings screen.
    models: Option<Receiver<Result<(), String>>>,
    /// Picks each sign-in's head turn and its moment.
    choose_ask: ChooseAsk,
    /// To wake the UI when a worker has news.
    ctx: egui::Context,
}

impl Workers {
    /// Runs a one-off job (a device list, a directory read) on a thread of
    /// its own; the answer arrives on the returned channel and wakes the UI.
    fn in_background<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Receiver<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let ctx = self.ctx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(job());
            ctx.request_repaint();
        });
        rx
    }

    /// The sign-in machine's effects (audit rows, failure counts) go to the store.
    fn record(&self, effects: Vec<Effect>) {
        if !effects.is_empty() {
            self.store.send(store_worker::Command::Apply(effects));
        }
    }

    /// Tells the recogniser what to do; repeated calls with the same mode are free.
    fn set_mode(&mut self, mode: Mode) {
        if self.mode.as_ref() != Some(&mode) {
            if let Some(w) = &self.recognition {
                w.send(Command::SetMode(mode.clone()));
            }
            self.mode = Some(mode);
        }
    }

    fn camera_status(&self) -> CameraStatus {
        self.camera.as_ref().map_or(
            CameraStatus::Lost {
                reason: "no camera".into(),
            },
            Camera::status,
        )
    }

    /// The recogniser with the backend the settings choose. A backend that
    /// cannot be built (unreadable TLS files, say) falls back to local
    /// matching: sign-in must keep working, and the badge shows which
    /// backend answers.
    fn start_recognition(&mut self, settings: &Settings) {
        self.recognition = None;
        self.mode = None;
        let Some(camera) = &self.camera else {
            return;
        };
        let params = vision::lbph::LbphParams::default();
        let backend = recognition::create_backend(settings, params).unwrap_or_else(|e| {
            tracing::warn!(
                "recognition backend {:?} unavailable, matching locally: {e}",
                settings.backend
            );
            Box::new(recognition::LocalBackend::new(settings.recogniser, params))
        });
        let ctx = self.ctx.clone();
        self.recognition = Some(Worker::start(
            camera.frames(),
            || {
                Ok(vision::pipeline::FacePipeline::new(
                    vision::detect::FaceDetector::from_default_locations()?,
                    vision::quality::QualityGate::default(),
                ))
            },
            backend,
            burst_rule(settings),
            Recogniser {
                kind: settings.recogniser,
                lbph: params,
                head_turn: settings.head_turn_challenge,
                choose_ask: self.choose_ask,
            },
            recognition::StoreLinks {
                gallery: Arc::clone(&self.gallery),
                capture: self.store.capture_sink(),
            },
            move || ctx.request_repaint(),
        ));
    }
}

impl Kiosk {
    pub fn lang(&self) -> Language {
        self.settings.language
    }

    pub fn t(&self, text: T) -> &'static str {
        text.text(self.settings.language)
    }

    /// The kiosk's secrets folder, where registration leaves its files.
    pub fn secrets_dir(&self) -> &std::path::Path {
        self.secrets.dir()
    }

    /// The signed-in operator's personnel number, for the audit log.
    pub fn actor(&self) -> Option<String> {
        self.auth.session().map(|s| s.operator.personnel_no.clone())
    }

    pub fn is_admin(&self) -> bool {
        self.auth
            .session()
            .is_some_and(|s| s.operator.role == Role::Administrator)
    }

    pub fn camera_status(&self) -> CameraStatus {
        self.camera_status.clone()
    }

    /// The camera image scaled into `max` (aspect kept) and centred in it,
    /// with the face guide, the current hint and `caption` in the strip
    /// under the face (see [`face_guide`]).
    pub fn show_preview(&self, ui: &mut egui::Ui, max: egui::Vec2, caption: Option<&str>) {
        let p = theme::palette(ui.ctx());
        let Some((preview, texture)) = &self.preview else {
            let (rect, _) = ui.allocate_exact_size(max, egui::Sense::hover());
            ui.painter().rect_filled(rect, 16.0, p.panel);
            let (icon, status) = match self.camera_status() {
                CameraStatus::Lost { .. } => (icons::ICON_VIDEOCAM_OFF, self.t(T::CameraLost)),
                _ => (icons::ICON_VIDEOCAM, self.t(T::CameraStarting)),
            };
            ui.painter().text(
                rect.center() - egui::vec2(0.0, 30.0),
                egui::Align2::CENTER_CENTER,
                icon.codepoint,
                egui::FontId::new(64.0, icon.font_family()),
                p.weak_text,
            );
            ui.painter().text(
                rect.center() + egui::vec2(0.0, 30.0),
                egui::Align2::CENTER_CENTER,
                status,
                egui::FontId::proportional(26.0),
                p.text,
            );
            return;
        };
        let (w, h) = preview.frame.image.dimensions();
        let scale = (max.x / w as f32).min(max.y / h as f32);
        let size = egui::vec2(w as f32, h as f32) * scale;
        let (slot, _) = ui.allocate_exact_size(max, egui::Sense::hover());
        let image = egui::Rect::from_center_size(slot.center(), size);
        egui::Image::new((texture.id(), size))
            .corner_radius(16.0)
            .paint_at(ui, image);
        let face = preview.face.map(|f| {
            egui::Rect::from_min_size(
                image.min + egui::vec2(f.x as f32, f.y as f32) * scale,
                egui::vec2(f.width as f32, f.height as f32) * scale,
            )
        });
        let state = match (&preview.issue, face) {
            (None, Some(_)) => GuideState::Good,
            (Some(QualityIssue::NoFace) | None, _) => GuideState::NoFace,
            (Some(_), _) => GuideState::Adjust,
        };
        let hint = preview.issue.as_ref().and_then(|issue| {
            // "Look into the camera" is what the screen's title says already.
            (*issue != QualityIssue::NoFace)
                .then(|| (hint_icon(issue), crate::i18n::hint(issue, self.lang())))
        });
        // Why the last turn did not count, while no quality hint is due.
        let hint = hint.or_else(|| {
            self.challenge_failed
                .filter(|&(_, at)| now_millis() - at < CHALLENGE_HINT_MS)
                .and_then(|(v, _)| crate::i18n::challenge_hint(v, self.lang()))
                .map(|text| (icons::ICON_SYNC_PROBLEM, text))
        });
        // The turn asked for, while a face is there to make it.
        let challenge = preview
            .challenge
            .filter(|_| face.is_some())
            .map(|turn| (turn, crate::i18n::turn(turn, self.lang())));
        face_guide::paint(
            ui,
            image,
            &Overlay {
                state,
                face,
                hint,
                caption,
                challenge,
            },
        );
    }
}

/// The icon that goes with a quality hint on the preview.
fn hint_icon(issue: &QualityIssue) -> crate::widgets::Icon {
    match issue {
        QualityIssue::NoFace => icons::ICON_FACE,
        QualityIssue::SeveralFaces { .. } => icons::ICON_GROUP,
        QualityIssue::TooSmall { .. } => icons::ICON_ZOOM_IN,
        QualityIssue::OffCentre => icons::ICON_CENTER_FOCUS_STRONG,
        QualityIssue::TooDark { .. } => icons::ICON_LIGHT_MODE,
        QualityIssue::TooBright { .. } => icons::ICON_BRIGHTNESS_HIGH,
        QualityIssue::Blurred { .. } => icons::ICON_PAN_TOOL,
    }
}

pub struct KioskApp {
    kiosk: Kiosk,
    workers: Workers,
    screen: Screen,
    /// Set by an administrator's "exit kiosk".
    exit_allowed: bool,
    /// Fullscreen kiosk mode: the window covers the monitor and only an
    /// administrator may close it.
    locked_down: bool,
    sized_to_monitor: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Camera(#[from] crate::camera::CameraError),
}

/// The path given on the command line, else the settings' camera: an index
/// opens a USB camera, anything else is a folder of images or a video file.
fn open_camera(folder: Option<&Path>, settings: &Settings, fps: f64) -> Result<Camera, StartError> {
    let source = match (folder, settings.camera.trim().parse::<u32>()) {
        (Some(path), _) => file_source(path, fps)?,
        (None, Ok(index)) => {
            let resolution = settings.resolution;
            return Ok(Camera::start(move || {
                Box::new(DeviceSource::new(index, resolution)) as Box<dyn FrameSource>
            }));
        }
        (None, Err(_)) => file_source(Path::new(settings.camera.trim()), fps)?,
    };
    Ok(Camera::start(move || source as Box<dyn FrameSource>))
}

/// What a settings change must restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    /// The camera and the recogniser on it.
    Camera,
    /// The recogniser: another backend, endpoint or TLS file, another
    /// recogniser kind, or the head-turn check turned on or off.
    Recogniser,
}

fn restart_for(old: &Settings, new: &Settings, camera_fixed: bool) -> Option<Restart> {
    let camera = (&old.camera, old.resolution) != (&new.camera, new.resolution);
    let link = old.offload_key() != new.offload_key();
    let recogniser =
        (old.recogniser, old.head_turn_challenge) != (new.recogniser, new.head_turn_challenge);
    if camera && !camera_fixed {
        Some(Restart::Camera)
    } else if link || recogniser {
        Some(Restart::Recogniser)
    } else {
        None
    }
}

fn burst_rule(settings: &Settings) -> vision::burst::BurstRule {
    vision::burst::BurstRule {
        threshold: settings.threshold_of(settings.recogniser),
        ..Default::default()
    }
}

impl KioskApp {
    pub fn new(ctx: &egui::Context, config: Config, locked_down: bool) -> Result<Self, StartError> {
        theme::apply(ctx, false);
        let secrets_dir = config
            .secrets_dir
            .clone()
            .unwrap_or_else(|| Secrets::default_dir(&config.data_dir));
        let store = Store::open_with_secrets(&config.data_dir, &secrets_dir)?;
        let secrets = store.secrets().clone();
        let settings = Settings::load(&store).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let camera = open_camera(config.camera.as_deref(), &settings, config.camera_fps)?;
        let gallery = GalleryFeed::new();
        let store_worker = {
            let ctx = ctx.clone();
            StoreWorker::start(store, Arc::clone(&gallery), config.sync, move || {
                ctx.request_repaint()
            })
        };
        store_worker.send(store_worker::Command::Load);
        let line = {
            let ctx = ctx.clone();
            LineLink::new(secrets.clone(), config.opcua_listen.clone(), move || {
                ctx.request_repaint()
            })
        };
        let mut workers = Workers {
            store: store_worker,
            recognition: None,
            mode: None,
            camera: Some(camera),
            camera_folder: config.camera,
            camera_fps: config.camera_fps,
            gallery,
            cluster: None,
            cameras: None,
            line,
            certificates: None,
            models: None,
            choose_ask: config.choose_ask,
            ctx: ctx.clone(),
        };
        workers.start_recognition(&settings);
        let kiosk = Kiosk {
            auth: AuthMachine::new(settings.policy.clone()),
            settings,
            operators: Vec::new(),
            data_dir: config.data_dir.clone(),
            secrets,
            error: None,
            pending_face: None,
            not_recognised_at: None,
            challenge_failed: None,
            last_backend: None,
            plant: None,
            applied: None,
            line: LineStatus::Off,
            line_listen_fixed: config.opcua_listen.clone(),
            camera_status: CameraStatus::Starting,
            preview: None,
        };
        Ok(KioskApp {
            kiosk,
            workers,
            screen: Screen::Loading,
            exit_allowed: false,
            locked_down,
            sized_to_monitor: false,
        })
    }

    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    pub fn kiosk(&self) -> &Kiosk {
        &self.kiosk
    }

    fn navigate(&mut self, nav: Nav) {
        // The new screen starts its recognition afresh; an enrollment
        // capture that was not saved (queued before this) is forgotten.
        self.workers.mode = None;
        self.workers
            .store
            .send(store_worker::Command::DiscardCapture);
        let (screen, actions) = screens::open(nav, &self.kiosk);
        self.screen = screen;
        self.apply(actions);
    }

    /// Carries out what a screen asked for, after it was drawn (public for
    /// tests, which ask as a screen would).
    pub fn apply(&mut self, actions: Vec<Action>) {
        let now = now_millis();
        for action in actions {
            match action {
                Action::Navigate(nav) => self.navigate(nav),
                Action::Store(command) => self.workers.store.send(command),
                Action::Cluster(command) => {
                    let ctx = self.workers.ctx.clone();
                    self.workers
                        .cluster
                        .get_or_insert_with(|| ClusterWorker::start(move || ctx.request_repaint()))
                        .send(command);
                }
                Action::Recognise(mode) => self.workers.set_mode(mode),
                Action::RestartMode => self.workers.mode = None,
                Action::CancelSignIn => self.kiosk.auth.cancel(now),
                Action::SignOut => {
                    let effects = self.kiosk.auth.sign_out(now);
                    self.workers.record(effects);
                }
                Action::Exit => self.exit_allowed = true,
                Action::ListCameras => {
                    self.workers.cameras = Some(self.workers.in_background(|| {
                        crate::camera::list_devices().map_err(|e| e.to_string())
                    }));
                }
                Action::CheckModels => {
                    self.workers.models =
                        Some(self.workers.in_background(recognition::dlib_models));
                }
                Action::ListRejectedCertificates => {
                    let pki = self.workers.line.pki_dir().to_owned();
                    self.workers.certificates = Some(
                        self.workers
                            .in_background(move || line_link::rejected(&pki)),
                    );
                }
                Action::TrustCertificate(file_name) => {
                    let pki = self.workers.line.pki_dir().to_owned();
                    self.workers.certificates = Some(
                        self.workers
                            .in_background(move || line_link::trust(&pki, &file_name)),
                    );
                }
            }
        }
    }

    fn on_store_event(&mut self, reply: store_worker::Event, now: Millis) {
        let k = &mut self.kiosk;
        match &reply {
            store_worker::Event::Loaded {
                operators,
                settings,
            } => {
                k.operators = operators.clone();
                self.apply_settings(settings.clone());
                let has_admin = self
                    .kiosk
                    .operators
                    .iter()
                    .any(|o| o.role == Role::Administrator);
                self.navigate(if has_admin { Nav::SignIn } else { Nav::Setup });
                return;
            }
            store_worker::Event::PinChecked(check) => {
                let effects = k.auth.pin_checked(*check, now);
                self.workers.record(effects);
            }
            store_worker::Event::PasswordChecked(outcome) => {
                let effects = k.auth.password_checked(outcome.clone(), now);
                self.workers.record(effects);
            }
            store_worker::Event::WhoIs {
                operator,
                locked_until,
            } => {
                if let (Some(op), Some(face)) = (operator.clone(), k.pending_face.take()) {
                    let effects = k.auth.face_identified(op, face, *locked_until, now);
                    self.workers.record(effects);
                }
            }
            store_worker::Event::Changed { operators, .. } => {
                k.operators = operators.clone();
            }
            store_worker::Event::SettingsSaved(settings) => {
                let restart =
                    restart_for(&k.settings, settings, self.workers.camera_folder.is_some());
                self.apply_settings(settings.clone());
                if let Some(what) = restart {
                    self.restart_recognition(what);
                }
            }
            store_worker::Event::Plant(status) => k.plant = Some(status.clone()),
            store_worker::Event::Failed(e) => self.kiosk.error = Some(e.clone()),
            store_worker::Event::Audit { .. } | store_worker::Event::Exported(_) => {}
        }
        let actions = self.screen.on_store_event(&reply);
        self.apply(actions);
    }

    fn apply_settings(&mut self, settings: Settings) {
        theme::apply(&self.workers.ctx, settings.high_contrast);
        self.kiosk.auth.set_policy(settings.policy.clone());
        if let Some(w) = &self.workers.recognition {
            w.send(Command::SetRule(burst_rule(&settings)));
        }
        self.workers.line.apply(&settings);
        self.kiosk.settings = settings;
    }

    /// New settings take effect at once: a new camera restarts the
    /// capture thread and the recogniser, a new backend, endpoint or TLS
    /// file the recogniser (the store worker restarts its plant sync
    /// itself). The recogniser starts from the store worker's current
    /// gallery; the status bar says what was restarted.
    fn restart_recognition(&mut self, what: Restart) {
        let (k, w) = (&mut self.kiosk, &mut self.workers);
        w.recognition = None;
        k.last_backend = None;
        if what == Restart::Camera {
            w.camera = None; // closes the mailbox: the old recogniser ends
            k.preview = None;
            match open_camera(w.camera_folder.as_deref(), &k.settings, w.camera_fps) {
                Ok(camera) => w.camera = Some(camera),
                Err(e) => k.error = Some(e.to_string()),
            }
        }
        w.start_recognition(&k.settings);
        let text = match what {
            Restart::Camera => T::CameraRestarted,
            Restart::Recogniser => T::RecognitionRestarted,
        };
        k.applied = Some((text, now_millis()));
    }

    fn on_recognition_event(&mut self, event: Event, now: Millis) {
        let k = &mut self.kiosk;
        if let Event::Identified { face, .. } | Event::Verified { face, .. } = &event {
            k.last_backend = Some(face.backend);
        }
        if let Event::NotRecognised { backend, .. } = &event {
            k.last_backend = Some(backend);
        }
        let verdict = match &event {
            Event::Identified { face, .. } | Event::Verified { face, .. } => face.challenge,
            Event::NotRecognised { challenge, .. } => *challenge,
            _ => None,
        };
        if let Some(v) = verdict.filter(|v| *v != Verdict::Answered) {
            k.challenge_failed = Some((v, now));
        }
        match &event {
            Event::Identified { personnel_no, face }
                if matches!(self.screen, Screen::SignIn(_))
                    && *k.auth.state() == AuthState::Idle =>
            {
                k.pending_face = Some(face.clone());
                self.workers.store.send(store_worker::Command::WhoIs {
                    personnel_no: personnel_no.clone(),
                });
            }
            Event::NotRecognised { .. } => k.not_recognised_at = Some(now),
            Event::Verified { matched, face } => {
                let effects = k.auth.face_verified(*matched, face.clone(), now);
                self.workers.record(effects);
                self.workers.mode = None;
            }
            Event::Failed(e) => k.error = Some(e.clone()),
            _ => {}
        }
        let actions = self.screen.on_recognition_event(&self.kiosk, &event);
        self.apply(actions);
    }

    /// Polls the workers and runs the timers; no drawing.
    pub fn poll(&mut self, ctx: &egui::Context) {
        let now = now_millis();
        let replies: Vec<store_worker::Event> = self.workers.store.events().collect();
        for reply in replies {
            self.on_store_event(reply, now);
        }
        let (events, preview) = match &self.workers.recognition {
            Some(w) => (w.events().collect::<Vec<_>>(), w.preview()),
            None => (Vec::new(), None),
        };
        for event in events {
            self.on_recognition_event(event, now);
        }
        let cluster: Vec<_> = self
            .workers
            .cluster
            .as_ref()
            .map(|c| c.events().collect())
            .unwrap_or_default();
        for event in cluster {
            self.screen.on_cluster_event(event);
        }
        if let Some(cameras) = self
            .workers
            .cameras
            .as_ref()
            .and_then(|rx| rx.try_recv().ok())
        {
            self.workers.cameras = None;
            self.screen.on_cameras(cameras);
        }
        if let Some(models) = self
            .workers
            .models
            .as_ref()
            .and_then(|rx| rx.try_recv().ok())
        {
            self.workers.models = None;
            self.screen.on_models(models);
        }
        if let Some(list) = self
            .workers
            .certificates
            .as_ref()
            .and_then(|rx| rx.try_recv().ok())
        {
            self.workers.certificates = None;
            self.screen.on_certificates(list);
        }
        self.kiosk.camera_status = self.workers.camera_status();
        if let Some(p) = preview {
            let (w, h) = p.frame.image.dimensions();
            let image = ColorImage::from_gray([w as usize, h as usize], p.frame.image.as_raw());
            match &mut self.kiosk.preview {
                Some((old, texture)) => {
                    texture.set(image, TextureOptions::LINEAR);
                    *old = p;
                }
                None => {
                    self.kiosk.preview =
                        Some((p, ctx.load_texture("camera", image, TextureOptions::LINEAR)))
                }
            }
        }
        if ctx.input(|i| {
            i.events.iter().any(|e| {
                matches!(
                    e,
                    egui::Event::PointerButton { pressed: true, .. } | egui::Event::Key { .. }
                )
            })
        }) {
            self.kiosk.auth.activity(now);
        }
        let was_signed_in = self.kiosk.auth.session().is_some();
        let effects = self.kiosk.auth.tick(now);
        self.workers.record(effects);
        for request in self.workers.line.poll() {
            let effects = self.kiosk.auth.sign_out_by_line(&request.user, now);
            self.workers.record(effects);
        }
        let refused = self.workers.line.refused_passwords();
        self.workers
            .record(refused.into_iter().map(Effect::Audit).collect());
        // Whatever screen was open, a session that ended leaves it.
        if was_signed_in
            && self.kiosk.auth.session().is_none()
            && !matches!(self.screen, Screen::SignIn(_))
        {
            self.navigate(Nav::SignIn);
        }
        // The line hears of every sign-in and sign-out in the frame that
        // decided it.
        let k = &self.kiosk;
        self.workers.line.publish(line_link::session_state(
            k.auth.session(),
            k.auth.policy(),
            &k.settings.line.access_levels,
        ));
        self.kiosk.line = self.workers.line.status().clone();
        ctx.request_repaint_after(Duration::from_millis(250));
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        let k = &mut self.kiosk;
        let p = theme::palette(ui.ctx());
        let mut items = Vec::new();
        // Short texts: all of it fits beside the title from 1024 px across.
        if let Some(s) = k.auth.session() {
            items.push(Item {
                icon: icons::ICON_ACCOUNT_CIRCLE,
                text: s.operator.name.clone(),
                colour: p.text,
            });
        }
        // The backend that answered the last face decision; none yet: the icon alone.
        let (icon, text, colour) = match k.last_backend {
            None => (icons::ICON_MEMORY, "", p.weak_text),
            Some(b @ "local") => (icons::ICON_MEMORY, b, p.info),
            Some(b) => (icons::ICON_CLOUD, b, p.info),
        };
        items.push(Item {
            icon,
            text: text.to_owned(),
            colour,
        });
        // The plant sync, while an offload service is configured: in step
        // (icon alone) or unreachable (the kiosk goes on with its own copy).
        match &k.plant {
            Some(PlantStatus::Synced) => items.push(Item {
                icon: icons::ICON_SYNC,
                text: String::new(),
                colour: p.good,
            }),
            Some(PlantStatus::Unreachable(_)) => items.push(Item {
                icon: icons::ICON_SYNC_PROBLEM,
                text: k.t(T::PlantUnreachable).to_owned(),
                colour: p.accent,
            }),
            Some(PlantStatus::Off) | None => {}
        }
        // The OPC UA server, while it is on: listening (icon alone),
        // starting, or failed (it says so: the line does not know who is here).
        match &k.line {
            LineStatus::Off => {}
            LineStatus::Listening(_) => items.push(Item {
                icon: icons::ICON_LAN,
                text: String::new(),
                colour: p.good,
            }),
            LineStatus::Starting => items.push(Item {
                icon: icons::ICON_LAN,
                text: "OPC UA".into(),
                colour: p.accent,
            }),
            LineStatus::Failed(_) => items.push(Item {
                icon: icons::ICON_LAN,
                text: k.t(T::LineUnreachable).to_owned(),
                colour: p.bad,
            }),
        }
        // A running camera is the normal case: its green icon says enough.
        let (icon, text, colour) = match k.camera_status() {
            CameraStatus::Running { .. } => (icons::ICON_VIDEOCAM, "", p.good),
            CameraStatus::Starting => (icons::ICON_VIDEOCAM, k.t(T::CameraStarting), p.accent),
            CameraStatus::Lost { .. } => (icons::ICON_VIDEOCAM_OFF, k.t(T::CameraLost), p.bad),
        };
        items.push(Item {
            icon,
            text: text.to_owned(),
            colour,
        });
        items.push(Item {
            icon: icons::ICON_FACTORY,
            text: status_bar::station(ui.ctx()),
            colour: p.weak_text,
        });
        items.push(Item {
            icon: icons::ICON_SCHEDULE,
            text: status_bar::clock(ui.ctx()),
            colour: p.text,
        });
        status_bar::status_bar(ui, k.t(T::AppTitle), &items, |ui| {
            let other = k.lang().toggled();
            let label = match other {
                Language::De => "Deutsch",
                Language::En => "English",
            };
            let size = egui::vec2(160.0, 56.0);
            if crate::widgets::icon_key(ui, icons::ICON_LANGUAGE, label, size).clicked() {
                // A language switch on the idle screen is per kiosk, not per person: persist it.
                let mut s = k.settings.clone();
                s.language = other;
                k.settings.language = other;
                self.workers
                    .store
                    .send(store_worker::Command::SaveSettings {
                        settings: s,
                        actor: k.actor(),
                    });
            }
        });
        // What the last settings change restarted, for a few seconds.
        if let Some((what, at)) = k.applied {
            if now_millis() - at < APPLIED_SHOWN_MS {
                ui.horizontal(|ui| {
                    status_bar::icon_label(ui, icons::ICON_TASK_ALT, 28.0, p.good);
                    ui.label(RichText::new(k.t(what)).color(p.good));
                });
            }
        }
        if let Some(e) = k.error.clone() {
            ui.horizontal(|ui| {
                status_bar::icon_label(ui, icons::ICON_WARNING, 28.0, p.bad);
                ui.label(RichText::new(e).color(p.bad));
                if ui.button(k.t(T::Ok)).clicked() {
                    k.error = None;
                }
            });
        }
    }
}

impl KioskApp {
    fn lock_down(&mut self, ctx: &egui::Context) {
        if ctx.input(|i| i.viewport().close_requested()) && !self.exit_allowed {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        }
        if self.exit_allowed {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        // Without a window manager "fullscreen" may be ignored: size the window to the monitor.
        if !self.sized_to_monitor {
            if let Some(size) = ctx.input(|i| i.viewport().monitor_size) {
                ctx.send_viewport_cmd(egui::ViewportCommand::OuterPosition(egui::pos2(0.0, 0.0)));
                ctx.send_viewport_cmd(egui::ViewportCommand::InnerSize(size));
                self.sized_to_monitor = true;
            }
        }
    }
}

impl eframe::App for KioskApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if self.locked_down {
            self.lock_down(&ctx);
        }
        self.poll(&ctx);
        let p = theme::palette(&ctx);
        egui::Panel::top("status")
            .frame(
                egui::Frame::new()
                    .fill(p.bar)
                    .inner_margin(egui::Margin::symmetric(16, 8))
                    .stroke(egui::Stroke::new(p.stroke / 2.0, p.border)),
            )
            .show(ui, |ui| self.status_bar(ui));
        // The screen in a centred column: on a wide panel the content stays together.
        let actions = egui::CentralPanel::default()
            .frame(
                egui::Frame::new()
                    .fill(p.background)
                    .inner_margin(egui::Margin::symmetric(16, 16)),
            )
            .show(ui, |ui| {
                crate::widgets::centred_column(ui, theme::CONTENT_WIDTH, |ui| {
                    self.screen.show(ui, &self.kiosk)
                })
            })
            .inner;
        if matches!(self.screen, Screen::SignIn(_)) {
            static READY: std::sync::Once = std::sync::Once::new();
            let elapsed_ms = PROCESS_START.get().map(|t| t.elapsed().as_millis() as u64);
            READY.call_once(|| tracing::info!(elapsed_ms, "sign-in screen ready"));
        }
        self.apply(actions);
    }
}

//! One module per screen. A screen draws itself from the `Kiosk` (read
//! only), reacts to the workers' events, and says what it wants done as
//! [`Action`]s, which the app applies after drawing: no screen calls a
//! worker, changes the sign-in state or starts a thread. The app also
//! decides what may be opened.

pub mod admin;
pub mod enroll;
pub mod setup_admin;
pub mod sign_in;

use eframe::egui::Ui;

use crate::app::Kiosk;
use crate::cluster_worker;
use crate::recognition::Event;
use crate::recognition::Mode;
use crate::store::Operator;
use crate::store_worker;

/// Where to go next.
#[derive(Debug, Clone, PartialEq)]
pub enum Nav {
    Setup,
    SignIn,
    /// The enrollment wizard: a new operator, or re-enrolling this one.
    Enroll(Option<Operator>),
    Operators,
    Audit,
    Settings,
    Cluster,
    Line,
}

/// What a screen asks the app to do.
#[derive(Debug)]
pub enum Action {
    /// Open another screen.
    Navigate(Nav),
    /// A request for the store worker.
    Store(store_worker::Command),
    /// A request for the cluster worker (started on first use).
    Cluster(cluster_worker::Command),
    /// What the recogniser should do now; asking for the current mode again is free.
    Recognise(Mode),
    /// Start the current mode over (a new verification).
    RestartMode,
    /// Abandon the sign-in in progress.
    CancelSignIn,
    SignOut,
    /// An administrator leaves the kiosk.
    Exit,
    /// List the cameras for the settings screen (slow on some drivers).
    ListCameras,
    /// Check dlib's model files for the settings screen (reads and hashes them).
    CheckModels,
    /// List the client certificates the OPC UA server refused.
    ListRejectedCertificates,
    /// Trust a refused client certificate (its file name), then list again.
    TrustCertificate(String),
}

pub enum Screen {
    Loading,
    Setup(setup_admin::SetupAdmin),
    SignIn(sign_in::SignIn),
    Enroll(enroll::Enroll),
    Operators(admin::operators::Operators),
    Audit(admin::audit::AuditView),
    Settings(admin::settings::SettingsView),
    Cluster(admin::cluster::ClusterView),
    Line(admin::line::LineView),
}

/// Opens `nav`; administration needs a signed-in administrator, anything
/// else lands on the sign-in screen. Returns what the new screen needs done.
pub fn open(nav: Nav, kiosk: &Kiosk) -> (Screen, Vec<Action>) {
    let admin = kiosk.is_admin();
    let mut out = Vec::new();
    let screen = match nav {
        Nav::Setup => Screen::Setup(setup_admin::SetupAdmin::default()),
        Nav::Enroll(target) if admin => Screen::Enroll(enroll::Enroll::new(target, false)),
        Nav::Operators if admin => Screen::Operators(admin::operators::Operators::default()),
        Nav::Audit if admin => Screen::Audit(admin::audit::AuditView::new(&mut out)),
        Nav::Settings if admin => {
            Screen::Settings(admin::settings::SettingsView::new(kiosk, &mut out))
        }
        Nav::Cluster if admin => Screen::Cluster(admin::cluster::ClusterView::default()),
        Nav::Line if admin => Screen::Line(admin::line::LineView::new(kiosk, &mut out)),
        _ => Screen::SignIn(sign_in::SignIn::default()),
    };
    (screen, out)
}

impl Screen {
    pub fn show(&mut self, ui: &mut Ui, kiosk: &Kiosk) -> Vec<Action> {
        let mut out = Vec::new();
        let nav = match self {
            Screen::Loading => {
                ui.centered_and_justified(|ui| ui.spinner());
                None
            }
            Screen::Setup(s) => s.show(ui, kiosk, &mut out),
            Screen::SignIn(s) => s.show(ui, kiosk, &mut out),
            Screen::Enroll(s) => s.show(ui, kiosk, &mut out),
            Screen::Operators(s) => s.show(ui, kiosk, &mut out),
            Screen::Audit(s) => s.show(ui, kiosk, &mut out),
            Screen::Settings(s) => s.show(ui, kiosk, &mut out),
            Screen::Cluster(s) => s.show(ui, kiosk, &mut out),
            Screen::Line(s) => s.show(ui, kiosk, &mut out),
        };
        out.extend(nav.map(Action::Navigate));
        out
    }

    pub fn on_store_event(&mut self, event: &store_worker::Event) -> Vec<Action> {
        let mut out = Vec::new();
        let nav = match self {
            Screen::Setup(s) => s.on_reply(&mut out, event),
            Screen::Enroll(s) => s.on_reply(&mut out, event),
            Screen::SignIn(s) => s.on_reply(event),
            Screen::Operators(s) => s.on_reply(event),
            Screen::Audit(s) => s.on_reply(event),
            Screen::Settings(s) => s.on_reply(event),
            Screen::Line(s) => s.on_reply(event),
            Screen::Cluster(_) | Screen::Loading => None,
        };
        out.extend(nav.map(Action::Navigate));
        out
    }

    pub fn on_recognition_event(&mut self, kiosk: &Kiosk, event: &Event) -> Vec<Action> {
        let mut out = Vec::new();
        let nav = match self {
            Screen::Setup(s) => s.on_event(kiosk, &mut out, event),
            Screen::Enroll(s) => s.on_event(kiosk, &mut out, event),
            _ => None,
        };
        out.extend(nav.map(Action::Navigate));
        out
    }

    /// The cluster worker's events go to the cluster panel, if it is open.
    pub fn on_cluster_event(&mut self, event: cluster_worker::Event) {
        if let Screen::Cluster(s) = self {
            s.on_event(event);
        }
    }

    /// The camera list for the settings screen, if it is open.
    pub fn on_cameras(&mut self, cameras: crate::camera::CameraList) {
        if let Screen::Settings(s) = self {
            s.on_cameras(cameras);
        }
    }

    /// Whether dlib's models are usable, for the settings screen if it is open.
    pub fn on_models(&mut self, models: Result<(), String>) {
        if let Screen::Settings(s) = self {
            s.on_models(models);
        }
    }

    /// The rejected OPC UA client certificates, for the line screen if it is open.
    pub fn on_certificates(&mut self, list: crate::line_link::CertificateList) {
        if let Screen::Line(s) = self {
            s.on_certificates(list);
        }
    }

    /// A short name for tests and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Screen::Loading => "loading",
            Screen::Setup(_) => "setup",
            Screen::SignIn(_) => "sign_in",
            Screen::Enroll(_) => "enroll",
            Screen::Operators(_) => "operators",
            Screen::Audit(_) => "audit",
            Screen::Settings(_) => "settings",
            Screen::Cluster(_) => "cluster",
            Screen::Line(_) => "line",
        }
    }
}

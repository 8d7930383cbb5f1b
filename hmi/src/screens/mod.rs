//! One module per screen. A screen draws itself from the shared `Kiosk`,
//! reacts to worker replies and events, and asks for navigation by
//! returning a `Nav`; the app decides what may be opened.

pub mod admin;
pub mod enroll;
pub mod setup_admin;
pub mod sign_in;

use eframe::egui::Ui;

use crate::app::Kiosk;
use crate::recognition::Event;
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
}

/// Opens `nav`; administration needs a signed-in administrator, anything
/// else lands on the sign-in screen.
pub fn open(nav: Nav, kiosk: &Kiosk) -> Screen {
    let admin = kiosk.is_admin();
    match nav {
        Nav::Setup => Screen::Setup(setup_admin::SetupAdmin::default()),
        Nav::Enroll(target) if admin => Screen::Enroll(enroll::Enroll::new(target, false)),
        Nav::Operators if admin => Screen::Operators(admin::operators::Operators::default()),
        Nav::Audit if admin => Screen::Audit(admin::audit::AuditView::new(kiosk)),
        Nav::Settings if admin => Screen::Settings(admin::settings::SettingsView::new(kiosk)),
        Nav::Cluster if admin => Screen::Cluster(admin::cluster::ClusterView::new(kiosk)),
        _ => Screen::SignIn(sign_in::SignIn::default()),
    }
}

impl Screen {
    pub fn show(&mut self, ui: &mut Ui, kiosk: &mut Kiosk) -> Option<Nav> {
        match self {
            Screen::Loading => {
                ui.centered_and_justified(|ui| ui.spinner());
                None
            }
            Screen::Setup(s) => s.show(ui, kiosk),
            Screen::SignIn(s) => s.show(ui, kiosk),
            Screen::Enroll(s) => s.show(ui, kiosk),
            Screen::Operators(s) => s.show(ui, kiosk),
            Screen::Audit(s) => s.show(ui, kiosk),
            Screen::Settings(s) => s.show(ui, kiosk),
            Screen::Cluster(s) => s.show(ui, kiosk),
        }
    }

    pub fn on_reply(&mut self, kiosk: &mut Kiosk, reply: &store_worker::Event) -> Option<Nav> {
        match self {
            Screen::Setup(s) => s.on_reply(kiosk, reply),
            Screen::Enroll(s) => s.on_reply(kiosk, reply),
            Screen::SignIn(s) => s.on_reply(reply),
            Screen::Operators(s) => s.on_reply(reply),
            Screen::Audit(s) => s.on_reply(reply),
            Screen::Settings(s) => s.on_reply(reply),
            Screen::Cluster(_) | Screen::Loading => None,
        }
    }

    pub fn on_event(&mut self, kiosk: &mut Kiosk, event: &Event) -> Option<Nav> {
        match self {
            Screen::Setup(s) => s.on_event(kiosk, event),
            Screen::Enroll(s) => s.on_event(kiosk, event),
            _ => None,
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
        }
    }
}

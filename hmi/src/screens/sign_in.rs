//! The idle screen and the sign-in steps: live preview with the face box
//! and hints; or personnel number and password; the PIN pad after a face;
//! the face check after a password; and the signed-in home.

use eframe::egui::{self, RichText, Ui};

use super::Nav;
use crate::app::Kiosk;
use crate::auth::AuthState;
use crate::i18n::{self, T};
use crate::recognition::Mode;
use crate::store::{now_millis, Role, PIN_LEN};
use crate::store_worker;
use crate::theme;
use crate::widgets::{big_button, pin_pad, primary_button, Field, FieldKind, Form, KeyAction};

const PREVIEW: egui::Vec2 = egui::vec2(640.0, 480.0);
/// Room beside the preview for the heading, hint and button unwrapped.
const SIDE: f32 = 440.0;

/// The preview's box: 640×480, smaller (4:3 kept) where the screen leaves
/// less room beside it, e.g. at 1024×768.
fn preview_size(ui: &Ui) -> egui::Vec2 {
    let width = (ui.available_width() - SIDE)
        .min(ui.available_height() * PREVIEW.x / PREVIEW.y)
        .clamp(PREVIEW.x / 2.0, PREVIEW.x);
    egui::vec2(width, width * PREVIEW.y / PREVIEW.x)
}

#[derive(Default)]
pub struct SignIn {
    /// The personnel-number form, while open.
    password: Option<Form>,
    pin: String,
    /// A check is with the store; further submits wait.
    busy: bool,
}

impl SignIn {
    /// A PIN or password check is with the store.
    pub fn busy(&self) -> bool {
        self.busy
    }

    pub fn on_reply(&mut self, reply: &store_worker::Event) -> Option<Nav> {
        if matches!(
            reply,
            store_worker::Event::PinChecked(_)
                | store_worker::Event::PasswordChecked(_)
                | store_worker::Event::Failed(_)
        ) {
            self.busy = false;
            self.pin.clear();
            if matches!(reply, store_worker::Event::PasswordChecked(_)) {
                self.password = None;
            }
        }
        None
    }

    pub fn show(&mut self, ui: &mut Ui, kiosk: &mut Kiosk) -> Option<Nav> {
        let now = now_millis();
        let lang = kiosk.lang();
        let notice = kiosk.auth.notice(now).map(|n| i18n::notice(n, lang, now));
        if let Some(n) = &notice {
            ui.label(RichText::new(n).color(theme::ACCENT).size(30.0).strong());
        }
        match kiosk.auth.state().clone() {
            AuthState::Idle => match &mut self.password {
                Some(form) => {
                    kiosk.set_mode(Mode::Watch);
                    ui.heading(kiosk.t(T::UsePersonnelNo));
                    let mut submit = false;
                    let mut cancel = false;
                    let entered = form.show_with_input(ui, lang, |ui| {
                        ui.horizontal_wrapped(|ui| {
                            submit = primary_button(ui, kiosk.t(T::SignInTitle)).clicked();
                            cancel = big_button(ui, kiosk.t(T::Cancel)).clicked();
                        });
                    });
                    submit |= entered == KeyAction::Enter;
                    if cancel {
                        self.password = None;
                    } else if submit && !self.busy {
                        self.busy = true;
                        kiosk.store.send(store_worker::Command::CheckPassword {
                            personnel_no: form.value(T::PersonnelNo).trim().to_owned(),
                            password: form.value(T::Password).to_owned(),
                        });
                    }
                }
                None => {
                    kiosk.set_mode(Mode::Identify);
                    ui.horizontal_top(|ui| {
                        kiosk.show_preview(ui, preview_size(ui));
                        ui.vertical(|ui| {
                            ui.heading(kiosk.t(T::LookAtCamera));
                            let recently = kiosk.not_recognised_at.is_some_and(|t| now - t < 3_000);
                            if let Some(hint) = kiosk.hint() {
                                ui.label(RichText::new(hint).size(28.0));
                            } else if recently {
                                ui.label(RichText::new(kiosk.t(T::NotRecognised)).size(28.0));
                            }
                            ui.add_space(24.0);
                            if big_button(ui, kiosk.t(T::UsePersonnelNo)).clicked() {
                                self.password = Some(Form::new(vec![
                                    Field::new(T::PersonnelNo, FieldKind::Text),
                                    Field::new(T::Password, FieldKind::Secret),
                                ]));
                            }
                        });
                    });
                }
            },
            AuthState::AwaitingPin { operator, .. } => {
                kiosk.set_mode(Mode::Watch);
                ui.heading(format!("{}: {}", operator.name, kiosk.t(T::EnterPin)));
                ui.label(RichText::new("*".repeat(self.pin.len()) + " ").size(48.0));
                let submitted =
                    pin_pad(ui, &mut self.pin, *PIN_LEN.end(), lang) == KeyAction::Enter;
                if submitted && !self.busy && !self.pin.is_empty() {
                    self.busy = true;
                    kiosk.store.send(store_worker::Command::CheckPin {
                        operator: operator.id,
                        pin: std::mem::take(&mut self.pin),
                    });
                }
                if big_button(ui, kiosk.t(T::Cancel)).clicked() {
                    self.pin.clear();
                    kiosk.auth.cancel(now);
                }
            }
            AuthState::AwaitingFace { operator, .. } => {
                kiosk.set_mode(Mode::Verify {
                    personnel_no: operator.personnel_no.clone(),
                });
                ui.horizontal_top(|ui| {
                    kiosk.show_preview(ui, preview_size(ui));
                    ui.vertical(|ui| {
                        ui.heading(format!(
                            "{}: {}",
                            operator.name,
                            kiosk.t(T::LookAtCameraToConfirm)
                        ));
                        if let Some(hint) = kiosk.hint() {
                            ui.label(RichText::new(hint).size(28.0));
                        }
                        if big_button(ui, kiosk.t(T::Cancel)).clicked() {
                            kiosk.auth.cancel(now);
                        }
                    });
                });
            }
            AuthState::SignedIn(session) => {
                kiosk.set_mode(Mode::Watch);
                ui.heading(format!(
                    "{}: {}",
                    kiosk.t(T::Welcome),
                    session.operator.name
                ));
                ui.label(format!(
                    "{} · {}",
                    i18n::role(session.operator.role, lang),
                    session.method.as_str()
                ));
                ui.add_space(24.0);
                let mut nav = None;
                if session.operator.role == Role::Administrator {
                    ui.horizontal_wrapped(|ui| {
                        for (text, target) in [
                            (T::Operators, Nav::Operators),
                            (T::NewOperator, Nav::Enroll(None)),
                            (T::AuditLog, Nav::Audit),
                            (T::Settings, Nav::Settings),
                            (T::Cluster, Nav::Cluster),
                        ] {
                            if big_button(ui, kiosk.t(text)).clicked() {
                                nav = Some(target);
                            }
                        }
                    });
                }
                ui.add_space(24.0);
                if primary_button(ui, kiosk.t(T::SignOut)).clicked() {
                    let effects = kiosk.auth.sign_out(now);
                    kiosk.apply(effects);
                }
                return nav;
            }
        }
        None
    }
}

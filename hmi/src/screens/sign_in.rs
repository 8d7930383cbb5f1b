//! The idle screen and the sign-in steps: live preview with the face box
//! and hints; or personnel number and password; the PIN pad after a face;
//! the face check after a password; and the signed-in home.

use std::time::{Duration, Instant};

use eframe::egui::{self, RichText, Ui};

use super::{Action, Nav};
use crate::app::Kiosk;
use crate::auth::AuthState;
use crate::i18n::{self, T};
use crate::recognition::Mode;
use crate::store::{now_millis, Role, SecretCheck, PIN_LEN};
use crate::store_worker;
use crate::theme;
use crate::widgets::{
    big_icon_button, centred, icon_key, icons, pin_dots, pin_key_size, pin_pad_sized,
    pin_pad_width, primary_icon_button, tile, title, Field, FieldKind, Form, KeyAction, FORM_WIDTH,
};

/// The preview's largest size; smaller (4:3 kept) where the screen is.
const PREVIEW: egui::Vec2 = egui::vec2(960.0, 720.0);
/// Room under the preview for its button and the gaps.
const UNDER_PREVIEW: f32 = 100.0;
/// How long the PIN dots shake after a wrong PIN.
const SHAKE: Duration = Duration::from_millis(600);

/// The preview's box: as large as the column leaves with room for one row
/// of buttons under it, 4:3.
fn preview_size(ui: &Ui) -> egui::Vec2 {
    let width = ui
        .available_width()
        .min((ui.available_height() - UNDER_PREVIEW) * PREVIEW.x / PREVIEW.y)
        .clamp(PREVIEW.x / 3.0, PREVIEW.x);
    egui::vec2(width, width * PREVIEW.y / PREVIEW.x)
}

#[derive(Default)]
pub struct SignIn {
    /// The personnel-number form, while open.
    password: Option<Form>,
    pin: String,
    /// A check is with the store; further submits wait.
    busy: bool,
    /// When the store last turned a PIN down, for the dots' shake.
    wrong_pin_at: Option<Instant>,
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
            if matches!(
                reply,
                store_worker::Event::PinChecked(SecretCheck::Rejected { .. })
            ) {
                self.wrong_pin_at = Some(Instant::now());
            }
            if matches!(reply, store_worker::Event::PasswordChecked(_)) {
                self.password = None;
            }
        }
        None
    }

    pub fn show(&mut self, ui: &mut Ui, kiosk: &Kiosk, out: &mut Vec<Action>) -> Option<Nav> {
        let now = now_millis();
        let lang = kiosk.lang();
        let notice = kiosk.auth.notice(now).map(|n| i18n::notice(n, lang, now));
        if let Some(n) = &notice {
            ui.vertical_centered(|ui| {
                ui.label(
                    RichText::new(n)
                        .color(theme::palette(ui.ctx()).accent)
                        .size(30.0)
                        .strong(),
                );
            });
        }
        match kiosk.auth.state().clone() {
            AuthState::Idle => match &mut self.password {
                Some(form) => {
                    out.push(Action::Recognise(Mode::Watch));
                    title(ui, kiosk.t(T::UsePersonnelNo), None);
                    let mut submit = false;
                    let mut cancel = false;
                    let entered = centred(ui, FORM_WIDTH, |ui| {
                        form.show_with_input(ui, lang, |ui| {
                            ui.horizontal_wrapped(|ui| {
                                submit = primary_icon_button(
                                    ui,
                                    icons::ICON_LOGIN,
                                    kiosk.t(T::SignInTitle),
                                )
                                .clicked();
                                cancel = big_icon_button(ui, icons::ICON_CLOSE, kiosk.t(T::Cancel))
                                    .clicked();
                            });
                        })
                    });
                    submit |= entered == KeyAction::Enter;
                    if cancel {
                        self.password = None;
                    } else if submit && !self.busy {
                        self.busy = true;
                        out.push(Action::Store(store_worker::Command::CheckPassword {
                            personnel_no: form.value(T::PersonnelNo).trim().to_owned(),
                            password: form.value(T::Password).to_owned(),
                        }));
                    }
                }
                None => {
                    out.push(Action::Recognise(Mode::Identify));
                    title(ui, kiosk.t(T::LookAtCamera), Some(kiosk.t(T::FaceInOval)));
                    let recently = kiosk.not_recognised_at.is_some_and(|t| now - t < 3_000);
                    let caption = recently.then(|| kiosk.t(T::NotRecognised));
                    let size = preview_size(ui);
                    centred(ui, size.x, |ui| kiosk.show_preview(ui, size, caption));
                    ui.add_space(8.0);
                    ui.vertical_centered(|ui| {
                        if big_icon_button(ui, icons::ICON_BADGE, kiosk.t(T::UsePersonnelNo))
                            .clicked()
                        {
                            self.password = Some(Form::new(vec![
                                Field::new(T::PersonnelNo, FieldKind::Text),
                                Field::new(T::Password, FieldKind::Secret),
                            ]));
                        }
                    });
                }
            },
            AuthState::AwaitingPin { operator, .. } => {
                out.push(Action::Recognise(Mode::Watch));
                title(
                    ui,
                    &format!("{}: {}", operator.name, kiosk.t(T::EnterPin)),
                    Some(kiosk.t(T::PinHint)),
                );
                let shake = self
                    .wrong_pin_at
                    .map(|t| 1.0 - t.elapsed().as_secs_f32() / SHAKE.as_secs_f32())
                    .filter(|s| *s > 0.0)
                    .unwrap_or(0.0);
                if shake > 0.0 {
                    ui.ctx().request_repaint();
                }
                let slots = self.pin.len().max(*PIN_LEN.start());
                // The dots, the Cancel button and the gaps take this much.
                let around = 40.0 + 64.0 + 3.0 * ui.spacing().item_spacing.y;
                let key = pin_key_size(ui.available_height() - around);
                let width = pin_pad_width(key);
                let submitted = centred(ui, width, |ui| {
                    ui.vertical_centered(|ui| pin_dots(ui, self.pin.len(), slots, shake));
                    let submitted = pin_pad_sized(ui, &mut self.pin, *PIN_LEN.end(), lang, key)
                        == KeyAction::Enter;
                    let cancel = kiosk.t(T::Cancel);
                    let size = egui::vec2(width, 64.0);
                    if icon_key(ui, icons::ICON_CLOSE, cancel, size).clicked() {
                        self.pin.clear();
                        out.push(Action::CancelSignIn);
                    }
                    submitted
                });
                if submitted && !self.busy && !self.pin.is_empty() {
                    self.busy = true;
                    out.push(Action::Store(store_worker::Command::CheckPin {
                        operator: operator.id,
                        pin: std::mem::take(&mut self.pin),
                    }));
                }
            }
            AuthState::AwaitingFace { operator, .. } => {
                out.push(Action::Recognise(Mode::Verify {
                    personnel_no: operator.personnel_no.clone(),
                    challenge: true,
                }));
                title(
                    ui,
                    &format!("{}: {}", operator.name, kiosk.t(T::LookAtCameraToConfirm)),
                    Some(kiosk.t(T::FaceInOval)),
                );
                let size = preview_size(ui);
                centred(ui, size.x, |ui| kiosk.show_preview(ui, size, None));
                ui.add_space(8.0);
                ui.vertical_centered(|ui| {
                    if big_icon_button(ui, icons::ICON_CLOSE, kiosk.t(T::Cancel)).clicked() {
                        out.push(Action::CancelSignIn);
                    }
                });
            }
            AuthState::SignedIn(session) => {
                out.push(Action::Recognise(Mode::Watch));
                title(
                    ui,
                    &format!("{}: {}", kiosk.t(T::Welcome), session.operator.name),
                    Some(&format!(
                        "{} · {}",
                        i18n::role(session.operator.role, lang),
                        session.method.as_str()
                    )),
                );
                ui.add_space(24.0);
                let mut nav = None;
                let tile_size = egui::vec2(300.0, 96.0);
                let mut sign_out = false;
                if session.operator.role == Role::Administrator {
                    // Three columns of tiles, signing out the last: fits from 1024 px across.
                    centred(ui, 3.0 * tile_size.x + 2.0 * 12.0, |ui| {
                        egui::Grid::new("admin-tiles")
                            .num_columns(3)
                            .spacing([12.0, 12.0])
                            .show(ui, |ui| {
                                for (i, (icon, text, target)) in [
                                    (icons::ICON_GROUP, T::Operators, Nav::Operators),
                                    (icons::ICON_PERSON_ADD, T::NewOperator, Nav::Enroll(None)),
                                    (icons::ICON_RECEIPT_LONG, T::AuditLog, Nav::Audit),
                                    (icons::ICON_SETTINGS, T::Settings, Nav::Settings),
                                    (icons::ICON_HUB, T::Cluster, Nav::Cluster),
                                    (icons::ICON_LAN, T::Line, Nav::Line),
                                ]
                                .into_iter()
                                .enumerate()
                                {
                                    if tile(ui, icon, kiosk.t(text), tile_size, false).clicked() {
                                        nav = Some(target);
                                    }
                                    if i % 3 == 2 {
                                        ui.end_row();
                                    }
                                }
                                sign_out = tile(
                                    ui,
                                    icons::ICON_LOGOUT,
                                    kiosk.t(T::SignOut),
                                    tile_size,
                                    true,
                                )
                                .clicked();
                            });
                    });
                } else {
                    ui.vertical_centered(|ui| {
                        sign_out = primary_icon_button(ui, icons::ICON_LOGOUT, kiosk.t(T::SignOut))
                            .clicked();
                    });
                }
                if sign_out {
                    out.push(Action::SignOut);
                }
                return nav;
            }
        }
        None
    }
}

//! The enrollment wizard: details (new operators only), capture with
//! guidance and progress, save in one transaction, and an immediate
//! verification against the new templates.

use eframe::egui::{self, RichText, Ui};
use vision::quality::QualityIssue;

use super::{Action, Nav};
use crate::app::Kiosk;
use crate::i18n::{self, T};
use crate::recognition::{Event, Mode};
use crate::store::{validate_secret, Operator, Role, SecretKind};
use crate::store_worker::{self, OperatorDraft};
use crate::theme;
use crate::widgets::{
    big_icon_button, centred, choice_value, icons, primary_icon_button, progress_ring, title,
    Field, FieldKind, Form, KeyAction, FORM_WIDTH,
};

/// The progress column beside the preview.
const SIDE: f32 = 300.0;

/// The preview's box beside the progress column: at most 640×480, 4:3.
fn preview_size(ui: &Ui) -> egui::Vec2 {
    let width = (ui.available_width() - SIDE - ui.spacing().item_spacing.x)
        .min(ui.available_height() * 4.0 / 3.0)
        .clamp(320.0, 640.0);
    egui::vec2(width, width * 3.0 / 4.0)
}

/// The space left of the preview that centres it and the column beside it.
fn left_margin(ui: &Ui, size: egui::Vec2) -> f32 {
    let width = size.x + ui.spacing().item_spacing.x + SIDE;
    ((ui.available_width() - width) / 2.0 - ui.spacing().item_spacing.x).max(0.0)
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Details,
    Capture {
        captured: usize,
        skipped: Option<QualityIssue>,
    },
    Saving,
    Verifying(Operator),
    Done {
        operator: Operator,
        verified: bool,
    },
}

pub struct Enroll {
    /// Re-enrolling an existing operator; `None`: a new one.
    target: Option<Operator>,
    /// First start: the role is fixed to administrator and nobody is signed in.
    setup: bool,
    form: Form,
    role: Role,
    step: Step,
    error: Option<String>,
}

impl Enroll {
    pub fn new(target: Option<Operator>, setup: bool) -> Self {
        let form = Form::new(vec![
            Field::new(T::Name, FieldKind::Text),
            Field::new(T::PersonnelNo, FieldKind::Text),
            Field::new(T::Pin, FieldKind::Pin),
            Field::new(T::PinRepeat, FieldKind::Pin),
            Field::new(T::Password, FieldKind::Secret),
            Field::new(T::PasswordRepeat, FieldKind::Secret),
        ]);
        let step = if target.is_some() {
            Step::Capture {
                captured: 0,
                skipped: None,
            }
        } else {
            Step::Details
        };
        Enroll {
            target,
            setup,
            form,
            role: if setup {
                Role::Administrator
            } else {
                Role::Operator
            },
            step,
            error: None,
        }
    }

    /// The details as a draft, or the first problem found (checked here so
    /// that nobody stands through a capture only to hear the PIN was too short).
    fn draft(&self, kiosk: &Kiosk) -> Result<OperatorDraft, String> {
        let lang = kiosk.lang();
        let f = &self.form;
        let (name, no) = (f.value(T::Name).trim(), f.value(T::PersonnelNo).trim());
        if name.is_empty() || no.is_empty() {
            return Err(format!(
                "{} / {}",
                T::Name.text(lang),
                T::PersonnelNo.text(lang)
            ));
        }
        if kiosk.operators.iter().any(|o| o.personnel_no == no) {
            return Err(format!("{}: {no}", T::PersonnelNo.text(lang)));
        }
        let secret = |value: &str, repeat: &str, kind, rule: T| -> Result<Option<String>, String> {
            if value.is_empty() && repeat.is_empty() {
                return Ok(None);
            }
            validate_secret(kind, value).map_err(|_| rule.text(lang).to_owned())?;
            if value != repeat {
                return Err(T::SecretsMismatch.text(lang).to_owned());
            }
            Ok(Some(value.to_owned()))
        };
        let pin = secret(
            f.value(T::Pin),
            f.value(T::PinRepeat),
            SecretKind::Pin,
            T::PinRule,
        )?;
        let password = secret(
            f.value(T::Password),
            f.value(T::PasswordRepeat),
            SecretKind::Password,
            T::PasswordRule,
        )?;
        // Each sign-in order the role may use needs its secret.
        let policy = kiosk.settings.policy.for_role(self.role);
        if policy.face_then_pin && pin.is_none() {
            return Err(T::PinRule.text(lang).to_owned());
        }
        if policy.password_then_face && password.is_none() {
            return Err(T::PasswordRule.text(lang).to_owned());
        }
        Ok(OperatorDraft {
            name: name.to_owned(),
            personnel_no: no.to_owned(),
            role: self.role,
            pin,
            password,
        })
    }

    pub fn show(&mut self, ui: &mut Ui, kiosk: &Kiosk, out: &mut Vec<Action>) -> Option<Nav> {
        let lang = kiosk.lang();
        if !self.setup {
            title(ui, kiosk.t(T::EnrollTitle), None);
        }
        if let Some(e) = &self.error {
            ui.vertical_centered(|ui| {
                ui.label(
                    RichText::new(e)
                        .color(theme::palette(ui.ctx()).bad)
                        .size(26.0),
                );
            });
        }
        let done_nav = if self.setup {
            Nav::SignIn
        } else {
            Nav::Operators
        };
        match self.step.clone() {
            Step::Details => {
                out.push(Action::Recognise(Mode::Watch));
                let mut nav = None;
                let mut start = false;
                let (setup, role) = (self.setup, &mut self.role);
                let entered = centred(ui, FORM_WIDTH, |ui| {
                    self.form.show_with_input(ui, lang, |ui| {
                        if !setup {
                            ui.horizontal_wrapped(|ui| {
                                ui.label(kiosk.t(T::Role));
                                for r in Role::ALL {
                                    choice_value(
                                        ui,
                                        role,
                                        r,
                                        RichText::new(i18n::role(r, lang)).size(24.0),
                                    );
                                }
                            });
                        }
                        ui.horizontal_wrapped(|ui| {
                            start = primary_icon_button(
                                ui,
                                icons::ICON_PHOTO_CAMERA,
                                kiosk.t(T::EnrollStart),
                            )
                            .clicked();
                            if !setup
                                && big_icon_button(ui, icons::ICON_CLOSE, kiosk.t(T::Cancel))
                                    .clicked()
                            {
                                nav = Some(Nav::Operators);
                            }
                        });
                    })
                });
                if start || entered == KeyAction::Enter {
                    self.start_capture(kiosk);
                }
                nav
            }
            Step::Capture { captured, skipped } => {
                let target = kiosk.settings.enroll_frames;
                out.push(Action::Recognise(Mode::Enroll { target }));
                let mut cancelled = false;
                let size = preview_size(ui);
                ui.horizontal_top(|ui| {
                    ui.add_space(left_margin(ui, size));
                    kiosk.show_preview(ui, size, Some(kiosk.t(T::FaceInOval)));
                    let column = egui::Layout::top_down(egui::Align::Center);
                    ui.allocate_ui_with_layout(egui::vec2(SIDE, size.y), column, |ui| {
                        if let Some(op) = &self.target {
                            ui.label(RichText::new(&op.name).size(30.0).strong());
                        }
                        ui.label(
                            RichText::new(kiosk.t(T::Captured))
                                .size(22.0)
                                .color(theme::palette(ui.ctx()).weak_text),
                        );
                        progress_ring(ui, captured, target, 200.0);
                        if let Some(issue) = &skipped {
                            ui.add(
                                egui::Label::new(
                                    RichText::new(format!(
                                        "{}: {}",
                                        kiosk.t(T::Skipped),
                                        i18n::hint(issue, lang)
                                    ))
                                    .color(theme::palette(ui.ctx()).accent),
                                )
                                .wrap(),
                            );
                        }
                        ui.add_space(12.0);
                        cancelled =
                            big_icon_button(ui, icons::ICON_CLOSE, kiosk.t(T::Cancel)).clicked();
                    });
                });
                if !cancelled {
                    return None;
                }
                out.push(Action::Recognise(Mode::Watch));
                match self.target {
                    Some(_) => Some(Nav::Operators),
                    None => {
                        self.step = Step::Details;
                        None
                    }
                }
            }
            Step::Saving => {
                ui.vertical_centered(|ui| {
                    ui.add_space(48.0);
                    ui.add(egui::Spinner::new().size(64.0));
                    ui.label(kiosk.t(T::Working));
                });
                None
            }
            Step::Verifying(op) => {
                // A check of the new templates, not a sign-in: no challenge.
                out.push(Action::Recognise(Mode::Verify {
                    personnel_no: op.personnel_no.clone(),
                    challenge: false,
                }));
                let size = preview_size(ui);
                ui.horizontal_top(|ui| {
                    ui.add_space(left_margin(ui, size));
                    kiosk.show_preview(ui, size, Some(kiosk.t(T::Verifying)));
                    let column = egui::Layout::top_down(egui::Align::Center);
                    ui.allocate_ui_with_layout(egui::vec2(SIDE, size.y), column, |ui| {
                        ui.add(egui::Spinner::new().size(64.0));
                        ui.label(kiosk.t(T::Verifying));
                    });
                });
                None
            }
            Step::Done { operator, verified } => {
                out.push(Action::Recognise(Mode::Watch));
                let p = theme::palette(ui.ctx());
                let (icon, text, colour) = if verified {
                    (icons::ICON_CHECK_CIRCLE, T::EnrollDone, p.good)
                } else {
                    (icons::ICON_ERROR, T::EnrollVerifyFailed, p.bad)
                };
                ui.vertical_centered(|ui| {
                    ui.add_space(32.0);
                    crate::widgets::status_bar::icon_label(ui, icon, 96.0, colour);
                    ui.add(
                        egui::Label::new(
                            RichText::new(format!("{}: {}", operator.name, kiosk.t(text)))
                                .color(colour)
                                .size(30.0),
                        )
                        .wrap(),
                    );
                    ui.add_space(24.0);
                    primary_icon_button(ui, icons::ICON_CHECK, kiosk.t(T::Ok))
                        .clicked()
                        .then_some(done_nav)
                })
                .inner
            }
        }
    }

    fn start_capture(&mut self, kiosk: &Kiosk) {
        match self.draft(kiosk) {
            Ok(_) => {
                self.error = None;
                self.step = Step::Capture {
                    captured: 0,
                    skipped: None,
                };
            }
            Err(e) => self.error = Some(e),
        }
    }

    pub fn on_event(&mut self, kiosk: &Kiosk, out: &mut Vec<Action>, event: &Event) -> Option<Nav> {
        match (&self.step, event) {
            (
                Step::Capture { .. },
                Event::EnrollProgress {
                    captured, skipped, ..
                },
            ) => {
                self.step = Step::Capture {
                    captured: *captured,
                    skipped: skipped.clone(),
                };
            }
            // The templates went to the store worker; this saves them there.
            (Step::Capture { .. }, Event::EnrollCaptured { .. }) => {
                let actor = kiosk.actor();
                let request = match &self.target {
                    Some(op) => store_worker::Command::Enroll {
                        operator: op.id,
                        actor,
                    },
                    None => match self.draft(kiosk) {
                        Ok(draft) => store_worker::Command::CreateEnrolled { draft, actor },
                        Err(e) => {
                            self.error = Some(e);
                            self.step = Step::Details;
                            return None;
                        }
                    },
                };
                out.push(Action::Store(request));
                self.step = Step::Saving;
            }
            (Step::Verifying(op), Event::Verified { matched, .. }) => {
                self.step = Step::Done {
                    operator: op.clone(),
                    verified: *matched,
                };
            }
            _ => {}
        }
        None
    }

    pub fn on_reply(&mut self, out: &mut Vec<Action>, reply: &store_worker::Event) -> Option<Nav> {
        match (&self.step, reply) {
            (
                Step::Saving,
                store_worker::Event::Changed {
                    enrolled: Some(op), ..
                },
            ) => {
                // The gallery update was queued before this: verify against it.
                out.push(Action::RestartMode);
                self.step = Step::Verifying(op.clone());
            }
            (Step::Saving, store_worker::Event::Failed(e)) => {
                self.error = Some(e.clone());
                self.step = if self.target.is_some() {
                    Step::Capture {
                        captured: 0,
                        skipped: None,
                    }
                } else {
                    Step::Details
                };
            }
            _ => {}
        }
        None
    }
}

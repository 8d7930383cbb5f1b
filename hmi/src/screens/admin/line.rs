//! The line: whether and where the kiosk serves OPC UA, the line's name,
//! the role → access-level table, the account the line may call
//! `SignOut()` with, and the client certificates the server refused (an
//! administrator trusts one with a tap).

use eframe::egui::{self, RichText, Ui};

use super::{header, row_label, stepper, toggle, Action, Nav};
use crate::app::Kiosk;
use crate::i18n::{self, T};
use crate::line_link::{CertificateList, LineStatus};
use crate::settings::LineSettings;
use crate::store::Role;
use crate::store_worker;
use crate::theme;
use crate::widgets::{big_icon_button, icons, primary_icon_button, Field, FieldKind, Form};

/// The form's fields, in order.
const LISTEN: usize = 0;
const LINE_ID: usize = 1;
const USER: usize = 2;
const PASSWORD: usize = 3;

pub struct LineView {
    draft: LineSettings,
    texts: Form,
    /// `None` until the app has listed them.
    rejected: Option<CertificateList>,
    /// What the store worker is saving, then what it saved.
    pending: Option<T>,
    saved: Option<T>,
}

impl LineView {
    pub fn new(kiosk: &Kiosk, out: &mut Vec<Action>) -> Self {
        let line = kiosk.settings.line.clone();
        let mut texts = Form::new(vec![
            Field::new(T::LineListen, FieldKind::Text),
            Field::new(T::LineId, FieldKind::Text),
            Field::new(T::SignOutUser, FieldKind::Text),
            Field::new(T::SignOutPassword, FieldKind::Secret),
        ]);
        texts.fields[LISTEN].value = line.listen.clone();
        texts.fields[LINE_ID].value = line.line_id.clone();
        texts.fields[USER].value = line.sign_out_user.clone();
        texts.fields[PASSWORD].max_len = crate::store::PASSWORD_LEN.end().to_owned();
        out.push(Action::ListRejectedCertificates);
        LineView {
            draft: line,
            texts,
            rejected: None,
            pending: None,
            saved: None,
        }
    }

    /// Whether the rejected certificates have been listed (for tests and snapshots).
    pub fn listed(&self) -> bool {
        self.rejected.is_some()
    }

    pub fn on_certificates(&mut self, list: CertificateList) {
        self.rejected = Some(list);
    }

    pub fn on_reply(&mut self, reply: &store_worker::Event) -> Option<Nav> {
        if let store_worker::Event::SettingsSaved(s) = reply {
            self.draft = s.line.clone();
            self.texts.fields[PASSWORD].value.clear();
            self.saved = self.pending.take();
        }
        None
    }

    pub fn show(&mut self, ui: &mut Ui, kiosk: &Kiosk, out: &mut Vec<Action>) -> Option<Nav> {
        let nav = header(ui, kiosk, T::Line, icons::ICON_LAN);
        let p = theme::palette(ui.ctx());
        let (status, colour) = match &kiosk.line {
            LineStatus::Off => (kiosk.t(T::LineOff).to_owned(), p.weak_text),
            LineStatus::Starting => (kiosk.t(T::LineStarting).to_owned(), p.accent),
            LineStatus::Listening(url) => (url.clone(), p.good),
            LineStatus::Failed(e) => (e.clone(), p.bad),
        };
        ui.horizontal(|ui| {
            crate::widgets::status_bar::icon_label(ui, icons::ICON_LAN, 28.0, colour);
            ui.label(RichText::new(status).color(colour).strong());
            if let Some(listen) = &kiosk.line_listen_fixed {
                let text = format!("{}: {listen}", kiosk.t(T::ListenFixed));
                ui.label(RichText::new(text).color(p.weak_text));
            }
        });
        let mut draft = self.draft.clone();
        draft.listen = self.texts.fields[LISTEN].value.trim().to_owned();
        draft.line_id = self.texts.fields[LINE_ID].value.trim().to_owned();
        let problem = draft.check().err();
        ui.horizontal(|ui| {
            if let Some(problem) = &problem {
                ui.label(RichText::new(problem.to_string()).color(p.bad));
            }
            if let Some(saved) = self.saved {
                ui.label(RichText::new(kiosk.t(saved)).color(p.good));
            }
            let save = ui
                .add_enabled_ui(problem.is_none(), |ui| {
                    primary_icon_button(ui, icons::ICON_SAVE, kiosk.t(T::Save))
                })
                .inner;
            if save.clicked() {
                let mut settings = kiosk.settings.clone();
                settings.line = draft.clone();
                (self.pending, self.saved) = (Some(T::Saved), None);
                out.push(Action::Store(store_worker::Command::SaveSettings {
                    settings,
                    actor: kiosk.actor(),
                }));
            }
            if big_icon_button(ui, icons::ICON_KEY, kiosk.t(T::SetAccount)).clicked() {
                (self.pending, self.saved) = (Some(T::AccountSet), None);
                out.push(Action::Store(store_worker::Command::SetSignOutAccount {
                    user: self.texts.fields[USER].value.trim().to_owned(),
                    password: self.texts.fields[PASSWORD].value.clone(),
                    actor: kiosk.actor(),
                }));
            }
        });
        let (d, rejected, texts) = (&mut self.draft, &self.rejected, &mut self.texts);
        let lang = kiosk.lang();
        egui::ScrollArea::vertical()
            .auto_shrink([false, true])
            .show(ui, |ui| {
                egui::Grid::new("line")
                    .num_columns(2)
                    .spacing([24.0, 12.0])
                    .show(ui, |ui| {
                        // First: a refused client is what brings an
                        // administrator here most often.
                        row_label(ui, kiosk.t(T::RejectedCertificates));
                        ui.vertical(|ui| certificates(ui, rejected, kiosk, out));
                        ui.end_row();
                        row_label(ui, "OPC UA");
                        // One toggle a line: wrapped in a grid cell they
                        // would overlap the next row.
                        ui.vertical(|ui| {
                            toggle(ui, &mut d.enabled, kiosk.t(T::LineServe));
                            toggle(ui, &mut d.anonymous_read, kiosk.t(T::AnonymousRead));
                            toggle(
                                ui,
                                &mut d.allow_security_none,
                                kiosk.t(T::AllowSecurityNone),
                            );
                        });
                        ui.end_row();
                        for role in Role::ALL {
                            row_label(
                                ui,
                                &format!("{}: {}", kiosk.t(T::AccessLevel), i18n::role(role, lang)),
                            );
                            let level = d.access_levels.for_role_mut(role);
                            let mut value = f64::from(*level);
                            stepper(ui, &mut value, 1.0, 1.0..=f64::from(u16::MAX), 0);
                            *level = value as u16;
                            ui.end_row();
                        }
                        row_label(ui, kiosk.t(T::SignOutAccount));
                        let account = if d.sign_out_user.is_empty() {
                            "—".to_owned()
                        } else {
                            d.sign_out_user.clone()
                        };
                        ui.label(RichText::new(account).strong());
                        ui.end_row();
                    });
                texts.show_with_input(ui, lang, |_| {});
            });
        nav
    }
}

/// The refused client certificates, each with its Trust button.
fn certificates(
    ui: &mut Ui,
    rejected: &Option<CertificateList>,
    kiosk: &Kiosk,
    out: &mut Vec<Action>,
) {
    let p = theme::palette(ui.ctx());
    match rejected {
        None => {
            ui.spinner();
        }
        Some(Err(e)) => {
            ui.label(RichText::new(e).color(p.bad));
        }
        Some(Ok(list)) if list.is_empty() => {
            ui.label(RichText::new(kiosk.t(T::NoRejectedCertificates)).color(p.weak_text));
        }
        Some(Ok(list)) => {
            for cert in list {
                ui.horizontal(|ui| {
                    if big_icon_button(ui, icons::ICON_VERIFIED_USER, kiosk.t(T::Trust)).clicked() {
                        out.push(Action::TrustCertificate(cert.file_name.clone()));
                    }
                    ui.vertical(|ui| {
                        let who = cert.application_uri.as_deref().unwrap_or(&cert.subject);
                        ui.label(RichText::new(who).strong());
                        let valid = cert
                            .valid_to
                            .as_deref()
                            .map(|t| format!(" · {} {t}", kiosk.t(T::ValidUntil)))
                            .unwrap_or_default();
                        ui.label(
                            RichText::new(format!("SHA-1 {}{valid}", cert.thumbprint))
                                .small()
                                .color(p.weak_text),
                        );
                    });
                });
            }
        }
    }
    if big_icon_button(ui, icons::ICON_REFRESH, kiosk.t(T::Refresh)).clicked() {
        out.push(Action::ListRejectedCertificates);
    }
}

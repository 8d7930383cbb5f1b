//! Settings: language, camera, backend and offload endpoint, recogniser
//! and its threshold, the head-turn check, automatic sign-out and which
//! sign-in orders each role may use.

use eframe::egui::{self, RichText, Ui};

use super::{header, row_label, stepper, toggle, Action, Nav};
use crate::app::Kiosk;
use crate::auth::Method;
use crate::i18n::{self, Language, T};
use crate::settings::{BackendChoice, Settings};
use crate::store::Role;
use crate::store_worker;
use crate::theme;
use crate::widgets::{
    big_icon_button, choice, choice_value, icons, primary_icon_button, Field, FieldKind, Form,
};
use vision::recogniser::Kind;

/// Capture sizes offered for USB cameras.
const RESOLUTIONS: [(u32, u32); 3] = [(640, 480), (1280, 720), (1920, 1080)];

pub struct SettingsView {
    draft: Settings,
    /// The enumerated USB cameras (the app lists them off the UI thread).
    device_list: Option<crate::camera::CameraList>,
    /// Whether dlib's models are usable, else why not (the app checks
    /// them off the UI thread); `None` until it answers.
    models: Option<Result<(), String>>,
    /// Camera, endpoint and TLS paths, typed on the on-screen keyboard.
    texts: Form,
    saved: bool,
}

impl SettingsView {
    pub fn new(kiosk: &Kiosk, out: &mut Vec<Action>) -> Self {
        let s = kiosk.settings.clone();
        let mut texts = Form::new(vec![
            Field::new(T::Camera, FieldKind::Text),
            Field::new(T::OffloadEndpoint, FieldKind::Text),
            Field::new(T::TlsFiles, FieldKind::Text),
        ]);
        texts.fields[0].value = s.camera.clone();
        texts.fields[1].value = s.offload_endpoint.clone();
        texts.fields[2].value = [s.tls_ca.as_str(), &s.tls_cert, &s.tls_key].join(",");
        texts.fields.iter_mut().for_each(|f| f.max_len = 256);
        out.push(Action::ListCameras);
        out.push(Action::CheckModels);
        SettingsView {
            draft: s,
            device_list: None,
            models: None,
            texts,
            saved: false,
        }
    }

    pub fn on_cameras(&mut self, cameras: crate::camera::CameraList) {
        self.device_list = Some(cameras);
    }

    pub fn on_models(&mut self, models: Result<(), String>) {
        self.models = Some(models);
    }

    /// Whether the model check has answered (for tests and snapshots).
    pub fn models_checked(&self) -> bool {
        self.models.is_some()
    }

    /// Whether the camera enumeration has answered (for tests and snapshots).
    pub fn devices_listed(&self) -> bool {
        self.device_list.is_some()
    }

    pub fn on_reply(&mut self, reply: &store_worker::Event) -> Option<Nav> {
        if let store_worker::Event::SettingsSaved(s) = reply {
            self.draft = s.clone();
            self.saved = true;
        }
        None
    }

    pub fn show(&mut self, ui: &mut Ui, kiosk: &Kiosk, out: &mut Vec<Action>) -> Option<Nav> {
        let nav = header(ui, kiosk, T::Settings, icons::ICON_SETTINGS);
        let lang = kiosk.lang();
        ui.horizontal(|ui| {
            let valid = self.draft.policy.is_valid();
            if !valid {
                let bad = theme::palette(ui.ctx()).bad;
                ui.label(RichText::new("! face + PIN / password + face").color(bad));
            }
            if self.saved {
                ui.label(RichText::new("OK").color(theme::palette(ui.ctx()).good));
            }
            if ui
                .add_enabled_ui(valid, |ui| {
                    primary_icon_button(ui, icons::ICON_SAVE, kiosk.t(T::Save))
                })
                .inner
                .clicked()
            {
                let mut s = self.draft.clone();
                s.camera = self.texts.fields[0].value.trim().to_owned();
                s.offload_endpoint = self.texts.fields[1].value.trim().to_owned();
                let tls: Vec<String> = self.texts.fields[2]
                    .value
                    .split(',')
                    .map(|p| p.trim().to_owned())
                    .collect();
                [s.tls_ca, s.tls_cert, s.tls_key] =
                    [0, 1, 2].map(|i| tls.get(i).cloned().unwrap_or_default());
                self.saved = false;
                out.push(Action::Store(store_worker::Command::SaveSettings {
                    settings: s,
                    actor: kiosk.actor(),
                }));
            }
            if big_icon_button(ui, icons::ICON_POWER_SETTINGS_NEW, kiosk.t(T::ExitKiosk)).clicked()
            {
                out.push(Action::Exit);
            }
        });
        let d = &mut self.draft;
        egui::ScrollArea::vertical()
            .auto_shrink([false, true])
            .show(ui, |ui| {
                // One row per setting: its name in a column of its own, the
                // choices beside it.
                egui::Grid::new("settings")
                    .num_columns(2)
                    .spacing([24.0, 12.0])
                    .show(ui, |ui| {
                        row_label(ui, kiosk.t(T::Language));
                        ui.horizontal(|ui| {
                            choice_value(ui, &mut d.language, Language::En, "English");
                            choice_value(ui, &mut d.language, Language::De, "Deutsch");
                        });
                        ui.end_row();
                        row_label(ui, kiosk.t(T::Display));
                        ui.horizontal(|ui| {
                            toggle(ui, &mut d.high_contrast, kiosk.t(T::HighContrast));
                        });
                        ui.end_row();
                        row_label(ui, kiosk.t(T::Camera));
                        ui.horizontal_wrapped(|ui| {
                            match &self.device_list {
                                None => {
                                    ui.spinner();
                                }
                                Some(Err(e)) => {
                                    ui.label(RichText::new(e).color(theme::palette(ui.ctx()).bad));
                                }
                                Some(Ok(list)) => {
                                    for (index, name) in list {
                                        let chosen =
                                            self.texts.fields[0].value == index.to_string();
                                        if choice(ui, chosen, format!("{index}: {name}")).clicked()
                                        {
                                            self.texts.fields[0].value = index.to_string();
                                        }
                                    }
                                }
                            }
                            for (w, h) in RESOLUTIONS {
                                choice_value(ui, &mut d.resolution, (w, h), format!("{w}x{h}"));
                            }
                        });
                        ui.end_row();
                        row_label(ui, kiosk.t(T::Backend));
                        ui.horizontal_wrapped(|ui| {
                            for (backend, text) in [
                                (BackendChoice::Local, "Local"),
                                (BackendChoice::Offload, "Offload"),
                                (
                                    BackendChoice::OffloadWithFallback,
                                    "Offload, local fallback",
                                ),
                            ] {
                                choice_value(ui, &mut d.backend, backend, text);
                            }
                        });
                        ui.end_row();
                        let bad = theme::palette(ui.ctx()).bad;
                        let weak = theme::palette(ui.ctx()).weak_text;
                        let dlib_ok = matches!(self.models, Some(Ok(())));
                        row_label(ui, kiosk.t(T::Recogniser));
                        ui.horizontal_wrapped(|ui| {
                            choice_value(ui, &mut d.recogniser, Kind::Lbph, "lbph");
                            // A stored choice of dlib stays visible even when it cannot run.
                            ui.add_enabled_ui(dlib_ok || d.recogniser == Kind::Dlib, |ui| {
                                choice_value(ui, &mut d.recogniser, Kind::Dlib, "dlib");
                            });
                            match &self.models {
                                None => {
                                    ui.spinner();
                                    ui.label(RichText::new(kiosk.t(T::CheckingModels)).color(weak));
                                }
                                Some(Err(why)) => {
                                    ui.label(
                                        RichText::new(format!(
                                            "{}: {why}",
                                            kiosk.t(T::DlibUnavailable)
                                        ))
                                        .color(bad),
                                    );
                                }
                                Some(Ok(())) => {}
                            }
                        });
                        ui.end_row();
                        row_label(ui, kiosk.t(T::Threshold));
                        match d.recogniser {
                            Kind::Lbph => stepper(ui, &mut d.threshold, 1.0, 0.0..=500.0, 1),
                            Kind::Dlib => stepper(ui, &mut d.dlib_threshold, 0.01, 0.0..=2.0, 2),
                        }
                        ui.end_row();
                        row_label(ui, kiosk.t(T::HeadTurnChallenge));
                        ui.horizontal_wrapped(|ui| {
                            toggle(ui, &mut d.head_turn_challenge, kiosk.t(T::AskHeadTurn));
                            if d.head_turn_challenge && matches!(self.models, Some(Err(_))) {
                                ui.label(RichText::new(kiosk.t(T::ChallengeMotionOnly)).color(bad));
                            }
                        });
                        ui.end_row();
                        let mut minutes = d.policy.auto_sign_out_ms as f64 / 60_000.0;
                        row_label(ui, kiosk.t(T::AutoSignOutMinutes));
                        stepper(ui, &mut minutes, 1.0, 1.0..=120.0, 1);
                        ui.end_row();
                        d.policy.auto_sign_out_ms = (minutes * 60_000.0) as i64;
                        for role in Role::ALL {
                            let p = d.policy.for_role_mut(role);
                            row_label(ui, i18n::role(role, lang));
                            ui.horizontal(|ui| {
                                toggle(ui, &mut p.face_then_pin, Method::FaceThenPin.as_str());
                                toggle(
                                    ui,
                                    &mut p.password_then_face,
                                    Method::PasswordThenFace.as_str(),
                                );
                            });
                            ui.end_row();
                        }
                    });
                // Beside the keyboard: less to scroll past.
                self.texts.show_with_input(ui, lang, |_| {});
            });
        nav
    }
}

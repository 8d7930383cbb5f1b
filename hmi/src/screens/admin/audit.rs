//! The audit-log viewer: filter by action and actor, chain check, CSV export.

use eframe::egui::{self, RichText, Ui};

use super::{header, Action, Nav};
use crate::app::Kiosk;
use crate::i18n::T;
use crate::store::{AuditAction, AuditFilter, AuditRecord, ChainStatus};
use crate::store_worker;
use crate::theme;
use crate::widgets::{big_button, big_icon_button, choice_value, icons, Field, FieldKind, Form};

const PAGE: u32 = 500;

pub struct AuditView {
    filter: AuditFilter,
    actor: Form,
    records: Vec<AuditRecord>,
    chain: Option<ChainStatus>,
    exported: Option<String>,
    keyboard_open: bool,
}

impl AuditView {
    pub fn new(out: &mut Vec<Action>) -> Self {
        let filter = AuditFilter {
            limit: Some(PAGE),
            ..Default::default()
        };
        out.push(Action::Store(store_worker::Command::Audit(filter.clone())));
        AuditView {
            filter,
            actor: Form::new(vec![Field::new(T::PersonnelNo, FieldKind::Text)]),
            records: Vec::new(),
            chain: None,
            exported: None,
            keyboard_open: false,
        }
    }

    /// Whether the entries and the chain check have arrived (for tests).
    pub fn loaded(&self) -> bool {
        self.chain.is_some()
    }

    pub fn on_reply(&mut self, reply: &store_worker::Event) -> Option<Nav> {
        match reply {
            store_worker::Event::Audit { records, chain } => {
                self.records = records.clone();
                self.chain = Some(chain.clone());
            }
            store_worker::Event::Exported(path) => self.exported = Some(path.display().to_string()),
            _ => {}
        }
        None
    }

    fn refresh(&mut self, out: &mut Vec<Action>) {
        let actor = self.actor.value(T::PersonnelNo).trim();
        self.filter.actor_contains = (!actor.is_empty()).then(|| actor.to_owned());
        out.push(Action::Store(store_worker::Command::Audit(
            self.filter.clone(),
        )));
    }

    pub fn show(&mut self, ui: &mut Ui, kiosk: &Kiosk, out: &mut Vec<Action>) -> Option<Nav> {
        let nav = header(ui, kiosk, T::AuditLog, icons::ICON_RECEIPT_LONG);
        match &self.chain {
            Some(ChainStatus::Intact { rows }) => {
                ui.label(
                    RichText::new(format!("OK: {} ({rows})", kiosk.t(T::ChainIntact)))
                        .color(theme::palette(ui.ctx()).good),
                );
            }
            Some(ChainStatus::Unkeyed { rows }) => {
                ui.label(format!("{} ({rows})", kiosk.t(T::ChainIntact)));
            }
            Some(ChainStatus::Broken { seq, reason }) => {
                ui.label(
                    RichText::new(format!("!! {} {seq} ({reason:?})", kiosk.t(T::ChainBroken)))
                        .color(theme::palette(ui.ctx()).bad)
                        .strong(),
                );
            }
            None => {
                ui.spinner();
            }
        }
        let mut changed = false;
        ui.horizontal_wrapped(|ui| {
            ui.label(kiosk.t(T::Filter));
            changed |= choice_value(ui, &mut self.filter.action, None, "*").clicked();
            for action in AuditAction::ALL {
                changed |= choice_value(ui, &mut self.filter.action, Some(action), action.as_str())
                    .clicked();
            }
        });
        ui.horizontal(|ui| {
            self.actor.show_fields(ui, kiosk.lang());
            if big_button(ui, "abc").clicked() {
                self.keyboard_open = !self.keyboard_open;
            }
            if big_icon_button(ui, icons::ICON_DOWNLOAD, kiosk.t(T::ExportCsv)).clicked() {
                let name = format!("audit-{}.csv", crate::store::now_millis());
                out.push(Action::Store(store_worker::Command::ExportAudit {
                    filter: AuditFilter {
                        limit: None,
                        ..self.filter.clone()
                    },
                    path: kiosk.data_dir.join(name),
                    actor: kiosk.actor(),
                }));
            }
        });
        if let Some(path) = &self.exported {
            ui.label(format!("{} {path}", kiosk.t(T::Exported)));
        }
        if self.keyboard_open
            && self.actor.show_input(ui, kiosk.lang()) != crate::widgets::KeyAction::None
        {
            changed = true;
        }
        if changed {
            self.refresh(out);
        }
        // Fixed columns for time, actor and action; the rest (method,
        // backend, distance, detail) wraps in what is left, so that no
        // entry runs off a 1024 px screen.
        egui::ScrollArea::vertical()
            .auto_shrink([false, true])
            .show(ui, |ui| {
                for (i, r) in self.records.iter().enumerate() {
                    let at = std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(r.at.max(0) as u64);
                    let rest = [
                        r.method.clone(),
                        r.backend.clone(),
                        r.distance.map(|d| format!("{d:.1}")),
                        Some(r.detail.clone()),
                    ]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" · ");
                    let stripe = if i % 2 == 1 {
                        ui.visuals().faint_bg_color
                    } else {
                        egui::Color32::TRANSPARENT
                    };
                    egui::Frame::new()
                        .fill(stripe)
                        .inner_margin(egui::Margin::symmetric(0, 4))
                        .show(ui, |ui| {
                            ui.set_width(ui.available_width());
                            ui.horizontal_top(|ui| {
                                ui.spacing_mut().item_spacing.x = 16.0;
                                let time = humantime::format_rfc3339_seconds(at).to_string();
                                cell(ui, 250.0, RichText::new(time).monospace());
                                cell(ui, 80.0, r.actor.as_deref().unwrap_or("-").into());
                                cell(ui, 200.0, r.action.as_str().into());
                                ui.add(egui::Label::new(rest).wrap());
                            });
                        });
                }
            });
        nav
    }
}

/// A column of the audit table: `width` wide, its text cut short with "…".
fn cell(ui: &mut Ui, width: f32, text: RichText) {
    ui.allocate_ui(egui::vec2(width, 0.0), |ui| {
        ui.set_min_width(width);
        ui.add(egui::Label::new(text).truncate());
    });
}

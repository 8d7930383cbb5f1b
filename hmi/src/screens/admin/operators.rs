//! The operator list: re-enroll, delete (with all face data), add.

use eframe::egui::{self, RichText, Ui};

use super::{header, Action, Nav};
use crate::app::Kiosk;
use crate::i18n::{self, T};
use crate::store::OperatorId;
use crate::store_worker;
use crate::theme;
use crate::widgets::{big_button, big_icon_button, cell_label, icons, primary_icon_button};

#[derive(Default)]
pub struct Operators {
    /// The operator whose deletion awaits confirmation.
    confirm_delete: Option<OperatorId>,
}

impl Operators {
    pub fn on_reply(&mut self, reply: &store_worker::Event) -> Option<Nav> {
        if matches!(
            reply,
            store_worker::Event::Changed { .. } | store_worker::Event::Failed(_)
        ) {
            self.confirm_delete = None;
        }
        None
    }

    pub fn show(&mut self, ui: &mut Ui, kiosk: &Kiosk, out: &mut Vec<Action>) -> Option<Nav> {
        let mut nav = header(ui, kiosk, T::Operators, icons::ICON_GROUP);
        let lang = kiosk.lang();
        if primary_icon_button(ui, icons::ICON_PERSON_ADD, kiosk.t(T::NewOperator)).clicked() {
            nav = Some(Nav::Enroll(None));
        }
        egui::ScrollArea::vertical()
            .auto_shrink([false, true])
            .show(ui, |ui| {
                egui::Grid::new("operators")
                    .num_columns(5)
                    .spacing([24.0, 12.0])
                    .striped(true)
                    .show(ui, |ui| {
                        for op in &kiosk.operators {
                            cell_label(ui, RichText::new(&op.name).strong(), 64.0);
                            cell_label(ui, &op.personnel_no, 64.0);
                            cell_label(ui, i18n::role(op.role, lang), 64.0);
                            let enrolled = if op.enrolled_at.is_some() {
                                T::Enrolled
                            } else {
                                T::NotEnrolled
                            };
                            let p = theme::palette(ui.ctx());
                            let colour = if op.enrolled_at.is_some() {
                                p.good
                            } else {
                                p.accent
                            };
                            cell_label(ui, RichText::new(kiosk.t(enrolled)).color(colour), 64.0);
                            ui.horizontal(|ui| {
                                if self.confirm_delete != Some(op.id) {
                                    if big_icon_button(ui, icons::ICON_FACE, kiosk.t(T::ReEnroll))
                                        .clicked()
                                    {
                                        nav = Some(Nav::Enroll(Some(op.clone())));
                                    }
                                    if big_icon_button(ui, icons::ICON_DELETE, kiosk.t(T::Delete))
                                        .clicked()
                                    {
                                        self.confirm_delete = Some(op.id);
                                    }
                                    return;
                                }
                                // The question over its two answers, no wider than the
                                // buttons it replaces: the row fits from 1024 px.
                                ui.vertical(|ui| {
                                    ui.set_max_width(2.0 * 220.0);
                                    ui.add(
                                        egui::Label::new(
                                            RichText::new(kiosk.t(T::ConfirmDelete))
                                                .color(theme::palette(ui.ctx()).bad),
                                        )
                                        .wrap(),
                                    );
                                    ui.horizontal(|ui| {
                                        let delete = egui::Button::new(
                                            RichText::new(kiosk.t(T::Delete))
                                                .color(theme::palette(ui.ctx()).bad),
                                        )
                                        .min_size(egui::vec2(120.0, 64.0));
                                        if ui.add(delete).clicked() {
                                            out.push(Action::Store(
                                                store_worker::Command::DeleteOperator {
                                                    operator: op.id,
                                                    actor: kiosk.actor(),
                                                },
                                            ));
                                        }
                                        if big_button(ui, kiosk.t(T::Cancel)).clicked() {
                                            self.confirm_delete = None;
                                        }
                                    });
                                });
                            });
                            ui.end_row();
                        }
                    });
            });
        nav
    }
}

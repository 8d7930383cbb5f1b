//! Administration: operators, the audit log, the settings, the cluster and
//! the line's OPC UA link.

pub mod audit;
pub mod cluster;
pub mod line;
pub mod operators;
pub mod settings;

use eframe::egui::{self, RichText, Ui};

use super::{Action, Nav};
use crate::app::Kiosk;
use crate::i18n::T;
use crate::theme;
use crate::widgets::{big_icon_button, cell_label, choice, icons, Icon};

/// The heading every administration screen starts with (its icon as on
/// the home screen's tile), its way back, and a rule under both.
fn header(ui: &mut Ui, kiosk: &Kiosk, title: T, icon: Icon) -> Option<Nav> {
    let nav = ui
        .horizontal(|ui| {
            let back = big_icon_button(ui, icons::ICON_ARROW_BACK, kiosk.t(T::Back)).clicked();
            ui.add_space(12.0);
            let p = theme::palette(ui.ctx());
            crate::widgets::status_bar::icon_label(ui, icon, 40.0, p.accent);
            ui.label(
                RichText::new(kiosk.t(title))
                    .heading()
                    .strong()
                    .color(p.text),
            );
            back.then_some(Nav::SignIn)
        })
        .inner;
    ui.separator();
    nav
}

/// An on/off choice, framed like every choice.
pub(super) fn toggle(ui: &mut Ui, on: &mut bool, text: &str) {
    if choice(ui, *on, text).clicked() {
        *on = !*on;
    }
}

/// A setting's name, in the grid's first column: secondary text, centred
/// on the row's buttons (64 px: the steppers').
pub(super) fn row_label(ui: &mut Ui, text: &str) {
    let colour = theme::palette(ui.ctx()).weak_text;
    cell_label(ui, RichText::new(text).color(colour), 64.0);
}

/// A "−  value  +" stepper with 64 px buttons, showing `decimals` places.
pub(super) fn stepper(
    ui: &mut Ui,
    value: &mut f64,
    step: f64,
    range: std::ops::RangeInclusive<f64>,
    decimals: usize,
) {
    ui.horizontal(|ui| {
        let key = |ui: &mut Ui, text| {
            ui.add(
                egui::Button::new(RichText::new(text).size(30.0)).min_size(egui::vec2(64.0, 64.0)),
            )
        };
        if key(ui, "-").clicked() {
            *value = (*value - step).max(*range.start());
        }
        ui.label(
            RichText::new(format!("{value:.decimals$}"))
                .size(30.0)
                .strong(),
        );
        if key(ui, "+").clicked() {
            *value = (*value + step).min(*range.end());
        }
    });
}

//! Administration: operators, the audit log, the settings and the cluster.

pub mod audit;
pub mod cluster;
pub mod operators;
pub mod settings;

use eframe::egui::{RichText, Ui};

use super::{Action, Nav};
use crate::app::Kiosk;
use crate::i18n::T;
use crate::theme;
use crate::widgets::{big_icon_button, icons, Icon};

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

//! Administration: operators, the audit log, the settings and the cluster.

pub mod audit;
pub mod cluster;
pub mod operators;
pub mod settings;

use eframe::egui::Ui;

use super::Nav;
use crate::app::Kiosk;
use crate::i18n::T;
use crate::widgets::big_button;

/// The heading every administration screen starts with, and its way back.
fn header(ui: &mut Ui, kiosk: &Kiosk, title: T) -> Option<Nav> {
    ui.horizontal(|ui| {
        let back = big_button(ui, kiosk.t(T::Back)).clicked();
        ui.heading(kiosk.t(title));
        back.then_some(Nav::SignIn)
    })
    .inner
}

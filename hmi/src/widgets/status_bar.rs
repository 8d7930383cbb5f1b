//! The band across the top: the kiosk's name on the left; on the right who
//! is signed in, which recogniser answers, the camera, the station and the
//! clock, each with its icon so that it reads at a glance; then whatever the
//! caller adds at the right edge (the language switch).

use eframe::egui::{self, Align, Align2, Color32, FontId, Layout, RichText, Sense, Ui};

use super::Icon;
use crate::theme;

/// One piece of status: an icon and a short text (may be empty) in a colour.
pub struct Item {
    pub icon: Icon,
    pub text: String,
    pub colour: Color32,
}

fn fixed_id() -> egui::Id {
    egui::Id::unique("kubevision-status-fixed")
}

/// Shows `clock` and `station` instead of the real time and host name:
/// snapshots must look the same on every machine at every minute.
pub fn fix_clock_and_station(ctx: &egui::Context, clock: &str, station: &str) {
    ctx.data_mut(|d| d.insert_temp(fixed_id(), (clock.to_owned(), station.to_owned())));
}

fn fixed(ctx: &egui::Context) -> Option<(String, String)> {
    ctx.data(|d| d.get_temp(fixed_id()))
}

/// The local time as HH:MM; UTC where the time zone cannot be read.
pub fn clock(ctx: &egui::Context) -> String {
    if let Some((clock, _)) = fixed(ctx) {
        return clock;
    }
    jiff::Zoned::now().strftime("%H:%M").to_string()
}

/// The station's name: the host name, which is how the line's IT names kiosks.
pub fn station(ctx: &egui::Context) -> String {
    if let Some((_, station)) = fixed(ctx) {
        return station;
    }
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// An icon glyph the size of a text line, in `colour`.
pub fn icon_label(ui: &mut Ui, icon: Icon, size: f32, colour: Color32) {
    let (rect, _) = ui.allocate_exact_size(egui::Vec2::splat(size), Sense::hover());
    ui.painter().text(
        rect.center(),
        Align2::CENTER_CENTER,
        icon.codepoint,
        FontId::new(size, icon.font_family()),
        colour,
    );
}

/// Drawn right to left (the bar fills from its right edge): text, then
/// the icon that reads before it. No text: the icon alone.
fn item(ui: &mut Ui, item: &Item) {
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 6.0;
        if !item.text.is_empty() {
            ui.label(RichText::new(&item.text).size(20.0).color(item.colour));
        }
        icon_label(ui, item.icon, 26.0, item.colour);
    });
}

/// The bar's content; `trailing` draws at the right edge.
pub fn status_bar(ui: &mut Ui, title: &str, items: &[Item], trailing: impl FnOnce(&mut Ui)) {
    let p = theme::palette(ui.ctx());
    ui.horizontal(|ui| {
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            trailing(ui);
            ui.add_space(8.0);
            for i in items.iter().rev() {
                item(ui, i);
                ui.add_space(10.0);
            }
            // Last, so that on a narrow screen the title gives way (ending in "…").
            ui.with_layout(Layout::left_to_right(Align::Center), |ui| {
                icon_label(ui, egui_material_icons::icons::ICON_FACE, 36.0, p.accent);
                ui.add(
                    egui::Label::new(RichText::new(title).size(28.0).strong().color(p.text))
                        .truncate(),
                );
            });
        });
    });
}

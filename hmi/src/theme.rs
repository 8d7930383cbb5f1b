//! High-contrast industrial look: white on near-black, safety-yellow for
//! primary actions, large type readable from a metre, touch targets ≥ 48 px.

use eframe::egui::{self, Color32, FontFamily, FontId, Stroke, TextStyle, Vec2};

pub const BACKGROUND: Color32 = Color32::from_rgb(0x12, 0x14, 0x18);
pub const PANEL: Color32 = Color32::from_rgb(0x22, 0x26, 0x2c);
pub const TEXT: Color32 = Color32::WHITE;
pub const ACCENT: Color32 = Color32::from_rgb(0xFF, 0xC8, 0x00);
pub const GOOD: Color32 = Color32::from_rgb(0x3C, 0xD0, 0x70);
pub const BAD: Color32 = Color32::from_rgb(0xFF, 0x50, 0x40);

/// Smallest edge of anything that can be touched.
pub const MIN_TARGET: f32 = 48.0;

pub fn apply(ctx: &egui::Context) {
    ctx.set_visuals(egui::Visuals::dark());
    ctx.all_styles_mut(|style| {
        style.text_styles = [
            (
                TextStyle::Heading,
                FontId::new(38.0, FontFamily::Proportional),
            ),
            (TextStyle::Body, FontId::new(24.0, FontFamily::Proportional)),
            (
                TextStyle::Button,
                FontId::new(26.0, FontFamily::Proportional),
            ),
            (
                TextStyle::Monospace,
                FontId::new(20.0, FontFamily::Monospace),
            ),
            (
                TextStyle::Small,
                FontId::new(18.0, FontFamily::Proportional),
            ),
        ]
        .into();
        style.spacing.interact_size = Vec2::splat(MIN_TARGET);
        style.spacing.button_padding = Vec2::new(18.0, 12.0);
        style.spacing.item_spacing = Vec2::new(12.0, 12.0);
        // A solid scroll bar a gloved finger can hit, shown whenever the
        // content scrolls: a touch screen never hovers to reveal it.
        style.spacing.scroll = egui::style::ScrollStyle {
            bar_width: 24.0,
            dormant_background_opacity: 1.0,
            active_background_opacity: 1.0,
            interact_background_opacity: 1.0,
            dormant_handle_opacity: 1.0,
            active_handle_opacity: 1.0,
            interact_handle_opacity: 1.0,
            ..egui::style::ScrollStyle::solid()
        };
        let v = &mut style.visuals;
        v.panel_fill = BACKGROUND;
        v.window_fill = PANEL;
        // White text everywhere except on a selected (safety-yellow) choice,
        // which takes the selection's black: white on yellow is unreadable.
        for w in [
            &mut v.widgets.noninteractive,
            &mut v.widgets.inactive,
            &mut v.widgets.active,
            &mut v.widgets.open,
        ] {
            w.fg_stroke.color = TEXT;
        }
        v.widgets.inactive.weak_bg_fill = PANEL;
        v.widgets.inactive.bg_stroke = Stroke::new(2.0, Color32::from_gray(0x70));
        v.widgets.hovered = v.widgets.inactive; // nothing may depend on hover
        v.selection.bg_fill = ACCENT;
        v.selection.stroke = Stroke::new(2.0, Color32::BLACK);
    });
}

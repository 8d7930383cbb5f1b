//! The industrial look: white on near-black, safety-yellow for primary
//! actions, large type readable from a metre, touch targets ≥ 48 px; and a
//! high-contrast variant (pure black, white and yellow, thicker strokes) for
//! bright halls and weak eyes, chosen in the settings.
//!
//! Widgets that paint by hand (the face guide, the progress ring, the status
//! bar) take their colours from [`palette`], so that they follow the chosen
//! variant like egui's own widgets do.

use eframe::egui::{self, Color32, FontFamily, FontId, Stroke, TextStyle, Vec2};

pub const BACKGROUND: Color32 = Color32::from_rgb(0x12, 0x14, 0x18);
pub const PANEL: Color32 = Color32::from_rgb(0x22, 0x26, 0x2c);
pub const TEXT: Color32 = Color32::WHITE;
pub const ACCENT: Color32 = Color32::from_rgb(0xFF, 0xC8, 0x00);
pub const GOOD: Color32 = Color32::from_rgb(0x3C, 0xD0, 0x70);
pub const BAD: Color32 = Color32::from_rgb(0xFF, 0x50, 0x40);

/// Smallest edge of anything that can be touched.
pub const MIN_TARGET: f32 = 48.0;

/// The widest a screen's content gets; on wider screens it is centred, so
/// that the eye does not travel from one edge of a 24" panel to the other.
pub const CONTENT_WIDTH: f32 = 1240.0;

/// The colours and stroke width of one variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Palette {
    pub background: Color32,
    /// Cards, fields and buttons.
    pub panel: Color32,
    /// The status bar's band.
    pub bar: Color32,
    pub text: Color32,
    /// Secondary text: captions, explanations.
    pub weak_text: Color32,
    pub accent: Color32,
    /// Neutral information (which recogniser answered).
    pub info: Color32,
    pub good: Color32,
    pub bad: Color32,
    /// Frames of buttons and cards.
    pub border: Color32,
    /// Width of frames and outlines.
    pub stroke: f32,
}

pub const STANDARD: Palette = Palette {
    background: BACKGROUND,
    panel: PANEL,
    bar: Color32::from_rgb(0x1a, 0x1d, 0x22),
    text: TEXT,
    weak_text: Color32::from_gray(0xb4),
    accent: ACCENT,
    info: Color32::LIGHT_BLUE,
    good: GOOD,
    bad: BAD,
    border: Color32::from_gray(0x70),
    stroke: 2.0,
};

/// Only black, white and yellow; states told apart by colour *and* text.
pub const HIGH_CONTRAST: Palette = Palette {
    background: Color32::BLACK,
    panel: Color32::BLACK,
    bar: Color32::BLACK,
    text: Color32::WHITE,
    weak_text: Color32::WHITE,
    accent: Color32::from_rgb(0xFF, 0xE6, 0x00),
    info: Color32::WHITE,
    good: Color32::WHITE,
    bad: Color32::from_rgb(0xFF, 0xE6, 0x00),
    border: Color32::WHITE,
    stroke: 4.0,
};

fn palette_id() -> egui::Id {
    egui::Id::unique("kubevision-palette")
}

/// The variant [`apply`] chose last.
pub fn palette(ctx: &egui::Context) -> Palette {
    ctx.data(|d| d.get_temp(palette_id())).unwrap_or(STANDARD)
}

/// Sets fonts, sizes and colours; called at start and whenever the
/// settings load or are saved. Registering the icon font twice is a no-op.
pub fn apply(ctx: &egui::Context, high_contrast: bool) {
    ctx.add_font(egui_material_icons::font_insert());
    let p = if high_contrast {
        HIGH_CONTRAST
    } else {
        STANDARD
    };
    ctx.data_mut(|d| d.insert_temp(palette_id(), p));
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
        v.panel_fill = p.background;
        v.window_fill = p.panel;
        v.extreme_bg_color = p.background;
        // White text everywhere except on a selected (safety-yellow) choice,
        // which takes the selection's black: white on yellow is unreadable.
        for w in [
            &mut v.widgets.noninteractive,
            &mut v.widgets.inactive,
            &mut v.widgets.active,
            &mut v.widgets.open,
        ] {
            w.fg_stroke.color = p.text;
            w.corner_radius = egui::CornerRadius::same(10);
        }
        v.widgets.noninteractive.bg_stroke = Stroke::new(p.stroke / 2.0, p.border);
        v.widgets.inactive.weak_bg_fill = p.panel;
        v.widgets.inactive.bg_fill = p.panel;
        v.widgets.inactive.bg_stroke = Stroke::new(p.stroke, p.border);
        v.widgets.active.bg_stroke = Stroke::new(p.stroke, p.accent);
        v.widgets.hovered = v.widgets.inactive; // nothing may depend on hover
        v.selection.bg_fill = p.accent;
        v.selection.stroke = Stroke::new(p.stroke, Color32::BLACK);
        if high_contrast {
            v.faint_bg_color = Color32::from_gray(0x30);
        }
    });
}

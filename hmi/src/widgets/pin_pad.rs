//! A 3×4 PIN pad with keys of at least 96×80 px (above the 72 px a gloved
//! thumb needs), larger where the screen has room, and the dots that stand for the digits
//! typed (the digits themselves never show).

use eframe::egui::{self, Button, RichText, Stroke, Ui, Vec2};

use super::{hardware_input, icons, KeyAction};
use crate::i18n::{Language, T};
use crate::theme;

const KEY: Vec2 = Vec2::new(96.0, 80.0);
/// The largest key, for a pad that has a screen of its own.
const MAX_KEY: Vec2 = Vec2::new(132.0, 110.0);
const GAP: f32 = 12.0;

/// Three keys and the spacing between them.
pub const PIN_PAD_WIDTH: f32 = 3.0 * KEY.x + 2.0 * GAP;

/// The key size for a pad given `height` for its four rows: from the
/// smallest (96×80) to the largest (132×110), 6:5.
pub fn pin_key_size(height: f32) -> Vec2 {
    let h = ((height - 3.0 * GAP) / 4.0).clamp(KEY.y, MAX_KEY.y);
    Vec2::new(h * KEY.x / KEY.y, h)
}

/// The pad's width with keys of `key` size.
pub fn pin_pad_width(key: Vec2) -> f32 {
    3.0 * key.x + 2.0 * GAP
}

/// The pad with the smallest keys: beside a form's fields.
pub fn pin_pad(ui: &mut Ui, pin: &mut String, max_len: usize, lang: Language) -> KeyAction {
    pin_pad_sized(ui, pin, max_len, lang, KEY)
}

/// The pad with keys of `key` size (see [`pin_key_size`]).
pub fn pin_pad_sized(
    ui: &mut Ui,
    pin: &mut String,
    max_len: usize,
    lang: Language,
    key: Vec2,
) -> KeyAction {
    let text = (key.y * 0.34).max(28.0);
    let mut action = hardware_input(ui, pin, max_len, |c| c.is_ascii_digit());
    let (ok, backspace) = (T::Ok.text(lang), T::Backspace.text(lang));
    ui.vertical(|ui| {
        ui.spacing_mut().item_spacing = Vec2::splat(GAP);
        // Icon and label of Del and OK within the key's width.
        ui.spacing_mut().button_padding.x = 6.0;
        for row in [
            ["1", "2", "3"],
            ["4", "5", "6"],
            ["7", "8", "9"],
            [backspace, "0", ok],
        ] {
            ui.horizontal(|ui| {
                for label in row {
                    let response = if label == ok {
                        super::primary_icon_button_sized(ui, icons::ICON_CHECK, label, key)
                    } else if label == backspace {
                        super::icon_key(ui, icons::ICON_BACKSPACE, label, key)
                    } else {
                        ui.add(Button::new(RichText::new(label).size(text)).min_size(key))
                    };
                    if !response.clicked() {
                        continue;
                    }
                    action = if label == ok {
                        KeyAction::Enter
                    } else if label == backspace {
                        pin.pop();
                        KeyAction::Edited
                    } else {
                        if pin.len() < max_len {
                            pin.push_str(label);
                        }
                        KeyAction::Edited
                    };
                }
            });
        }
    });
    action
}

/// One dot per slot, filled for each digit typed; `slots` grows with the
/// PIN. `shake` (0 to 1, fading) moves the row side to side and turns it
/// red after a wrong PIN.
pub fn pin_dots(ui: &mut Ui, typed: usize, slots: usize, shake: f32) {
    let p = theme::palette(ui.ctx());
    let (radius, gap) = (14.0, 22.0);
    let width = slots as f32 * 2.0 * radius + slots.saturating_sub(1) as f32 * gap;
    let (rect, _) =
        ui.allocate_exact_size(egui::vec2(width, 2.0 * radius + 8.0), egui::Sense::hover());
    let offset = (shake * 40.0).sin() * 14.0 * shake;
    let colour = if shake > 0.0 { p.bad } else { p.accent };
    for i in 0..slots {
        let centre = egui::pos2(
            rect.min.x + offset + radius + i as f32 * (2.0 * radius + gap),
            rect.center().y,
        );
        if i < typed {
            ui.painter().circle_filled(centre, radius, colour);
        } else {
            ui.painter()
                .circle_stroke(centre, radius - 1.0, Stroke::new(p.stroke + 1.0, p.border));
        }
    }
}

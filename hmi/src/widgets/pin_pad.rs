//! A 3×4 PIN pad with 96×80 px keys (above the 72 px a gloved thumb needs), and the dots that stand for the digits
//! typed (the digits themselves never show).

use eframe::egui::{self, Stroke, Ui, Vec2};

use super::{hardware_input, icons, key, KeyAction};
use crate::i18n::{Language, T};
use crate::theme;

const KEY: Vec2 = Vec2::new(96.0, 80.0);
const GAP: f32 = 12.0;

/// Three keys and the spacing between them.
pub const PIN_PAD_WIDTH: f32 = 3.0 * KEY.x + 2.0 * GAP;

pub fn pin_pad(ui: &mut Ui, pin: &mut String, max_len: usize, lang: Language) -> KeyAction {
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
                        super::primary_icon_button_sized(ui, icons::ICON_CHECK, label, KEY)
                    } else if label == backspace {
                        super::icon_key(ui, icons::ICON_BACKSPACE, label, KEY)
                    } else {
                        key(ui, label, KEY)
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

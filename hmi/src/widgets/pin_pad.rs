//! A 3×4 PIN pad with 88 px keys; the digits never show, only dots.

use eframe::egui::{Ui, Vec2};

use super::{hardware_input, key, KeyAction};
use crate::i18n::{Language, T};

const KEY: Vec2 = Vec2::new(96.0, 88.0);

/// Three keys and the spacing between them.
pub const PIN_PAD_WIDTH: f32 = 3.0 * KEY.x + 2.0 * 12.0;

pub fn pin_pad(ui: &mut Ui, pin: &mut String, max_len: usize, lang: Language) -> KeyAction {
    let mut action = hardware_input(ui, pin, max_len, |c| c.is_ascii_digit());
    let (ok, backspace) = (T::Ok.text(lang), T::Backspace.text(lang));
    for row in [
        ["1", "2", "3"],
        ["4", "5", "6"],
        ["7", "8", "9"],
        [backspace, "0", ok],
    ] {
        ui.horizontal(|ui| {
            for label in row {
                if !key(ui, label, KEY).clicked() {
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
    action
}

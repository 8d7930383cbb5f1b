//! The on-screen keyboard: QWERTY (English) or QWERTZ (German), digits,
//! shift, space, backspace and enter; keys 56 px for gloved fingers. Shift
//! also reaches the symbols that passwords, paths and URLs need, laid out
//! as on the national keyboards.

use eframe::egui::{Ui, Vec2};

use super::{hardware_input, key, KeyAction};
use crate::i18n::{Language, T};
use crate::theme;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyboardLayout {
    Qwerty,
    Qwertz,
}

impl KeyboardLayout {
    pub fn for_language(lang: Language) -> Self {
        match lang {
            Language::En => KeyboardLayout::Qwerty,
            Language::De => KeyboardLayout::Qwertz,
        }
    }

    /// The four rows of keys; each shifted row has a key for every unshifted one.
    fn rows(self, shift: bool) -> [&'static str; 4] {
        match (self, shift) {
            (KeyboardLayout::Qwerty, false) => {
                ["1234567890-", "qwertyuiop", "asdfghjkl", "zxcvbnm.@"]
            }
            (KeyboardLayout::Qwerty, true) => {
                ["!@#$%^&*()_", "QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM:/"]
            }
            (KeyboardLayout::Qwertz, false) => {
                ["1234567890-", "qwertzuiopü", "asdfghjklöä", "yxcvbnm.@"]
            }
            (KeyboardLayout::Qwertz, true) => {
                ["!\"§$%&/()=_", "QWERTZUIOPÜ", "ASDFGHJKLÖÄ", "YXCVBNM:/"]
            }
        }
    }
}

/// Keys of 56 px for gloved fingers; narrower (down to the 48 px minimum
/// target) where the screen leaves less room.
const KEY: Vec2 = Vec2::new(56.0, 56.0);
const GAP: f32 = 4.0;
/// Keys in the longest row.
const COLUMNS: f32 = 11.0;

/// The width the keyboard takes with full-size keys.
pub const KEYBOARD_WIDTH: f32 = COLUMNS * KEY.x + (COLUMNS - 1.0) * GAP;

#[derive(Debug, Default)]
pub struct Keyboard {
    shift: bool,
}

impl Keyboard {
    pub fn show(
        &mut self,
        ui: &mut Ui,
        target: &mut String,
        max_len: usize,
        lang: Language,
    ) -> KeyAction {
        let mut action = hardware_input(ui, target, max_len, |c| !c.is_control());
        let push = |target: &mut String, c: char| {
            if target.chars().count() < max_len {
                target.push(c);
            }
        };
        let width = ((ui.available_width() - (COLUMNS - 1.0) * GAP) / COLUMNS)
            .clamp(theme::MIN_TARGET, KEY.x);
        let key_size = Vec2::new(width, KEY.y);
        ui.vertical(|ui| {
            ui.spacing_mut().item_spacing = Vec2::splat(GAP);
            // Every key its set width, even "@" or "W".
            ui.spacing_mut().button_padding.x = 4.0;
            for row in KeyboardLayout::for_language(lang).rows(self.shift) {
                ui.horizontal(|ui| {
                    for c in row.chars() {
                        if key(ui, &c.to_string(), key_size).clicked() {
                            push(target, c);
                            self.shift = false;
                            action = KeyAction::Edited;
                        }
                    }
                });
            }
            ui.horizontal(|ui| {
                if key(ui, T::Shift.text(lang), Vec2::new(width * 2.0, KEY.y)).clicked() {
                    self.shift = !self.shift;
                }
                if key(ui, T::Space.text(lang), Vec2::new(width * 4.0, KEY.y)).clicked() {
                    push(target, ' ');
                    action = KeyAction::Edited;
                }
                if key(ui, T::Backspace.text(lang), Vec2::new(width * 1.5, KEY.y)).clicked() {
                    target.pop();
                    action = KeyAction::Edited;
                }
                if key(ui, T::Ok.text(lang), Vec2::new(width * 2.0, KEY.y)).clicked() {
                    action = KeyAction::Enter;
                }
            });
        });
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_reaches_symbols_on_every_layout() {
        for layout in [KeyboardLayout::Qwerty, KeyboardLayout::Qwertz] {
            let (plain, shifted) = (layout.rows(false), layout.rows(true));
            for (p, s) in plain.iter().zip(shifted) {
                assert_eq!(
                    p.chars().count(),
                    s.chars().count(),
                    "{layout:?}: {p} / {s}"
                );
            }
            let all: String = plain.concat() + &shifted.concat();
            for needed in ['/', ':', '.', '-', '_', '@', '!', '$'] {
                assert!(all.contains(needed), "{layout:?} lacks {needed}");
            }
        }
    }
}

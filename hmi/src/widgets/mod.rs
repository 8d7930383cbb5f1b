//! Touch widgets: big buttons, the on-screen keyboard, the PIN pad and
//! input fields that take text only from those (never the OS keyboard).

mod field;
mod keyboard;
mod pin_pad;

pub use field::{Field, FieldKind, Form};
pub use keyboard::{Keyboard, KeyboardLayout, KEYBOARD_WIDTH};
pub use pin_pad::{pin_pad, PIN_PAD_WIDTH};

use eframe::egui::{self, Button, Color32, Response, RichText, Ui, Vec2};

use crate::theme;

/// What a keyboard or pad press did to the field it edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    None,
    Edited,
    Enter,
}

/// A wide button of at least 64 px height.
pub fn big_button(ui: &mut Ui, text: &str) -> Response {
    ui.add(Button::new(RichText::new(text).size(28.0)).min_size(Vec2::new(220.0, 64.0)))
}

/// The primary action: black on safety yellow.
pub fn primary_button(ui: &mut Ui, text: &str) -> Response {
    ui.add(
        Button::new(
            RichText::new(text)
                .size(28.0)
                .color(Color32::BLACK)
                .strong(),
        )
        .fill(theme::ACCENT)
        .min_size(Vec2::new(220.0, 64.0)),
    )
}

/// One option of several (a language, a role, a filter): always framed, so
/// that it reads as a button without hovering; the chosen one black on
/// safety yellow.
pub fn choice(ui: &mut Ui, selected: bool, text: impl Into<egui::WidgetText>) -> Response {
    ui.add(
        Button::new(text)
            .selected(selected)
            .min_size(Vec2::splat(theme::MIN_TARGET)),
    )
}

/// [`choice`] that sets `current` to `value` when tapped.
pub fn choice_value<V: PartialEq>(
    ui: &mut Ui,
    current: &mut V,
    value: V,
    text: impl Into<egui::WidgetText>,
) -> Response {
    let mut response = choice(ui, *current == value, text);
    if response.clicked() && *current != value {
        *current = value;
        response.mark_changed();
    }
    response
}

/// A square key; `wide` keys (space, enter) span several.
fn key(ui: &mut Ui, label: &str, size: Vec2) -> Response {
    ui.add(Button::new(RichText::new(label).size(28.0)).min_size(size))
}

/// Text typed on a hardware keyboard or a USB barcode scanner counts too.
fn hardware_input(
    ui: &Ui,
    target: &mut String,
    max_len: usize,
    accept: impl Fn(char) -> bool,
) -> KeyAction {
    let mut action = KeyAction::None;
    ui.input(|i| {
        for event in &i.events {
            match event {
                egui::Event::Text(t) => {
                    for c in t.chars().filter(|&c| accept(c)) {
                        if target.chars().count() < max_len {
                            target.push(c);
                            action = KeyAction::Edited;
                        }
                    }
                }
                egui::Event::Key {
                    key: egui::Key::Backspace,
                    pressed: true,
                    ..
                } => {
                    target.pop();
                    action = KeyAction::Edited;
                }
                egui::Event::Key {
                    key: egui::Key::Enter,
                    pressed: true,
                    ..
                } => action = KeyAction::Enter,
                _ => {}
            }
        }
    });
    action
}

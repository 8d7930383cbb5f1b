//! Touch widgets: big buttons (with icons), the on-screen keyboard, the PIN
//! pad and input fields that take text only from those (never the OS
//! keyboard); and what the screens draw by hand: the face guide over the
//! camera preview, the enrolment ring and the status bar.

pub mod face_guide;
mod field;
mod keyboard;
mod pin_pad;
mod progress_ring;
pub mod status_bar;

pub use field::{Field, FieldKind, Form, FORM_WIDTH};
pub use keyboard::{Keyboard, KeyboardLayout, KEYBOARD_WIDTH};
pub use pin_pad::{pin_dots, pin_key_size, pin_pad, pin_pad_sized, pin_pad_width, PIN_PAD_WIDTH};
pub use progress_ring::progress_ring;

/// The icon set (Material Symbols, outlined): `icons::ICON_LOGOUT` and so on.
pub use egui_material_icons::icons;
pub use egui_material_icons::MaterialIcon as Icon;

use eframe::egui::{self, Align2, Atom, Button, Color32, FontId, Response, RichText, Ui, Vec2};

use crate::theme;

/// What a keyboard or pad press did to the field it edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    None,
    Edited,
    Enter,
}

/// An icon as a button's leading atom, painted in the button's text colour.
/// It is not part of the button's name: people, tests and screen readers
/// find the button by its text.
fn icon_atom<'a>(icon: Icon, size: f32) -> Atom<'a> {
    Atom::paint(Vec2::splat(size), move |ui, args| {
        ui.painter().text(
            args.rect.center(),
            Align2::CENTER_CENTER,
            icon.codepoint,
            FontId::new(size, icon.font_family()),
            args.fallback_text_color,
        );
    })
}

const BIG: Vec2 = Vec2::new(220.0, 64.0);

/// A wide button of at least 64 px height.
pub fn big_button(ui: &mut Ui, text: &str) -> Response {
    ui.add(Button::new(RichText::new(text).size(28.0)).min_size(BIG))
}

/// [`big_button`] with an icon before its text.
pub fn big_icon_button(ui: &mut Ui, icon: Icon, text: &str) -> Response {
    ui.add(Button::new((icon_atom(icon, 32.0), RichText::new(text).size(28.0))).min_size(BIG))
}

fn primary_text(text: &str) -> RichText {
    RichText::new(text)
        .size(28.0)
        .color(Color32::BLACK)
        .strong()
}

/// The primary action: black on safety yellow.
pub fn primary_button(ui: &mut Ui, text: &str) -> Response {
    let fill = theme::palette(ui.ctx()).accent;
    ui.add(Button::new(primary_text(text)).fill(fill).min_size(BIG))
}

/// [`primary_button`] with an icon before its text.
pub fn primary_icon_button(ui: &mut Ui, icon: Icon, text: &str) -> Response {
    let fill = theme::palette(ui.ctx()).accent;
    ui.add(
        Button::new((icon_atom(icon, 32.0), primary_text(text)))
            .fill(fill)
            .min_size(BIG),
    )
}

/// A large home-screen tile: icon and text, `size` at least; `primary`:
/// black on safety yellow.
pub fn tile(ui: &mut Ui, icon: Icon, text: &str, size: Vec2, primary: bool) -> Response {
    let (text, fill) = if primary {
        (primary_text(text), theme::palette(ui.ctx()).accent)
    } else {
        (
            RichText::new(text).size(28.0),
            theme::palette(ui.ctx()).panel,
        )
    };
    ui.add(
        Button::new((icon_atom(icon, 40.0), text))
            .fill(fill)
            .min_size(size),
    )
}

/// `add` in a block `width` wide (or the whole width, where less), centred
/// horizontally where the cursor is.
pub fn centred<R>(ui: &mut Ui, width: f32, add: impl FnOnce(&mut Ui) -> R) -> R {
    let left = ((ui.available_width() - width) / 2.0 - ui.spacing().item_spacing.x).max(0.0);
    ui.horizontal_top(|ui| {
        ui.add_space(left);
        ui.vertical(|ui| {
            ui.set_max_width(width);
            add(ui)
        })
        .inner
    })
    .inner
}

/// Lays out `add` in a column at most `max_width` wide, centred in the
/// space left, from the top down.
pub fn centred_column<R>(ui: &mut Ui, max_width: f32, add: impl FnOnce(&mut Ui) -> R) -> R {
    let space = ui.available_rect_before_wrap();
    let width = space.width().min(max_width);
    let rect = egui::Rect::from_min_size(
        egui::pos2(space.center().x - width / 2.0, space.min.y),
        egui::vec2(width, space.height()),
    );
    ui.scope_builder(
        egui::UiBuilder::new()
            .max_rect(rect)
            .layout(egui::Layout::top_down(egui::Align::Min)),
        add,
    )
    .inner
}

/// A label centred in a row `height` tall: a grid's text beside its buttons.
pub fn cell_label(ui: &mut Ui, text: impl Into<egui::WidgetText>, height: f32) -> Response {
    ui.allocate_ui_with_layout(
        Vec2::new(0.0, height),
        egui::Layout::left_to_right(egui::Align::Center),
        |ui| {
            ui.set_min_height(height);
            ui.label(text)
        },
    )
    .inner
}

/// A screen's title over a line of secondary text, both centred.
pub fn title(ui: &mut Ui, heading: &str, secondary: Option<&str>) {
    let p = theme::palette(ui.ctx());
    ui.vertical_centered(|ui| {
        ui.add(egui::Label::new(RichText::new(heading).heading().strong().color(p.text)).wrap());
        if let Some(s) = secondary {
            ui.add(egui::Label::new(RichText::new(s).size(22.0).color(p.weak_text)).wrap());
        }
    });
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

/// A button of `size` with an icon before its (short) label: keys, the
/// status bar's language switch.
pub fn icon_key(ui: &mut Ui, icon: Icon, label: &str, size: Vec2) -> Response {
    ui.add(Button::new((icon_atom(icon, 28.0), RichText::new(label).size(24.0))).min_size(size))
}

/// A key-sized [`primary_icon_button`] (the PIN pad's OK).
fn primary_icon_button_sized(ui: &mut Ui, icon: Icon, label: &str, size: Vec2) -> Response {
    let fill = theme::palette(ui.ctx()).accent;
    let text = RichText::new(label)
        .size(24.0)
        .color(Color32::BLACK)
        .strong();
    ui.add(
        Button::new((icon_atom(icon, 28.0), text))
            .fill(fill)
            .min_size(size),
    )
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

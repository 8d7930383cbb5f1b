//! Input fields shown as large boxes; tapping one makes it the target of
//! the on-screen keyboard (or the PIN pad, for PIN fields).

use eframe::egui::{Button, RichText, Stroke, Ui, Vec2};

use super::{pin_pad, KeyAction, Keyboard, KEYBOARD_WIDTH, PIN_PAD_WIDTH};
use crate::i18n::{Language, T};
use crate::theme;

/// The width of a field's box.
pub const FIELD_WIDTH: f32 = 320.0;

/// The fields beside a full-size keyboard: how wide a screen's form is.
pub const FORM_WIDTH: f32 = FIELD_WIDTH + 12.0 + KEYBOARD_WIDTH;

/// Room beside the keyboard for the fields and, under them, the screen's
/// actions; with less, the actions go under the keyboard instead.
const SIDE_COLUMN: f32 = 560.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Secret,
    Pin,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub label: T,
    pub kind: FieldKind,
    pub value: String,
    pub max_len: usize,
}

impl Field {
    pub fn new(label: T, kind: FieldKind) -> Self {
        let max_len = if kind == FieldKind::Pin {
            crate::store::PIN_LEN.end().to_owned()
        } else {
            64
        };
        Field {
            label,
            kind,
            value: String::new(),
            max_len,
        }
    }

    fn shown(&self) -> String {
        match self.kind {
            FieldKind::Text => self.value.clone(),
            FieldKind::Secret | FieldKind::Pin => "*".repeat(self.value.chars().count()),
        }
    }
}

/// A set of fields with one active; Enter moves to the next field, and on
/// the last one reports `KeyAction::Enter` (submit).
#[derive(Debug, Default)]
pub struct Form {
    pub fields: Vec<Field>,
    pub active: usize,
    keyboard: Keyboard,
}

impl Form {
    pub fn new(fields: Vec<Field>) -> Self {
        Form {
            fields,
            active: 0,
            keyboard: Keyboard::default(),
        }
    }

    pub fn value(&self, label: T) -> &str {
        self.fields
            .iter()
            .find(|f| f.label == label)
            .map_or("", |f| f.value.as_str())
    }

    pub fn clear(&mut self) {
        self.fields.iter_mut().for_each(|f| f.value.clear());
        self.active = 0;
    }

    /// The fields as tappable boxes, each under its label.
    pub fn show_fields(&mut self, ui: &mut Ui, lang: Language) {
        ui.vertical(|ui| {
            ui.spacing_mut().item_spacing.y = 4.0;
            for (i, f) in self.fields.iter().enumerate() {
                let label = ui.label(RichText::new(f.label.text(lang)).size(18.0));
                let active = i == self.active;
                let stroke = if active {
                    Stroke::new(4.0, theme::palette(ui.ctx()).accent)
                } else {
                    Stroke::new(
                        theme::palette(ui.ctx()).stroke,
                        theme::palette(ui.ctx()).border,
                    )
                };
                let field = Button::new(RichText::new(f.shown()).size(26.0))
                    .stroke(stroke)
                    .fill(theme::palette(ui.ctx()).panel)
                    .min_size(Vec2::new(FIELD_WIDTH, theme::MIN_TARGET));
                // An empty field has no text of its own: its label names it.
                if ui.add(field).labelled_by(label.id).clicked() {
                    self.active = i;
                }
            }
        });
    }

    /// The fields on the left and the keyboard or PIN pad on the right;
    /// `actions` (the screen's buttons, say) go under the fields where the
    /// screen is wide enough, else under the keyboard, so that everything
    /// fits from 1024 px across.
    pub fn show_with_input(
        &mut self,
        ui: &mut Ui,
        lang: Language,
        actions: impl FnOnce(&mut Ui),
    ) -> KeyAction {
        let input = match self.fields.get(self.active).map(|f| f.kind) {
            Some(FieldKind::Pin) => PIN_PAD_WIDTH,
            _ => KEYBOARD_WIDTH,
        };
        let side = ui.available_width() - input - ui.spacing().item_spacing.x;
        let mut actions = Some(actions);
        let mut action = KeyAction::None;
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                self.show_fields(ui, lang);
                if side >= SIDE_COLUMN {
                    if let Some(actions) = actions.take() {
                        actions(ui);
                    }
                }
            });
            ui.vertical(|ui| {
                action = self.show_input(ui, lang);
                if let Some(actions) = actions.take() {
                    ui.add_space(ui.spacing().item_spacing.y);
                    actions(ui);
                }
            });
        });
        action
    }

    /// The keyboard or PIN pad for the active field.
    pub fn show_input(&mut self, ui: &mut Ui, lang: Language) -> KeyAction {
        let Some(field) = self.fields.get_mut(self.active) else {
            return KeyAction::None;
        };
        let action = match field.kind {
            FieldKind::Pin => pin_pad(ui, &mut field.value, field.max_len, lang),
            FieldKind::Text | FieldKind::Secret => {
                self.keyboard
                    .show(ui, &mut field.value, field.max_len, lang)
            }
        };
        if action == KeyAction::Enter && self.active + 1 < self.fields.len() {
            self.active += 1;
            return KeyAction::Edited;
        }
        action
    }
}

//! Input fields shown as large boxes; tapping one makes it the target of
//! the on-screen keyboard (or the PIN pad, for PIN fields).

use eframe::egui::{Button, Color32, RichText, Stroke, Ui, Vec2};

use super::{pin_pad, KeyAction, Keyboard};
use crate::i18n::{Language, T};
use crate::theme;

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
                    Stroke::new(4.0, theme::ACCENT)
                } else {
                    Stroke::new(2.0, Color32::from_gray(0x70))
                };
                let field = Button::new(RichText::new(f.shown()).size(26.0))
                    .stroke(stroke)
                    .fill(theme::PANEL)
                    .min_size(Vec2::new(320.0, 48.0));
                // An empty field has no text of its own: its label names it.
                if ui.add(field).labelled_by(label.id).clicked() {
                    self.active = i;
                }
            }
        });
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

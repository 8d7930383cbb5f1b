//! First start: the store has no administrator. The enrollment wizard,
//! fixed to the administrator role, creates the first one with their face.

use eframe::egui::Ui;

use super::enroll::Enroll;
use super::{Action, Nav};
use crate::app::Kiosk;
use crate::i18n::T;
use crate::recognition::Event;
use crate::store_worker;
use crate::widgets::title;

pub struct SetupAdmin {
    wizard: Enroll,
}

impl Default for SetupAdmin {
    fn default() -> Self {
        SetupAdmin {
            wizard: Enroll::new(None, true),
        }
    }
}

impl SetupAdmin {
    pub fn show(&mut self, ui: &mut Ui, kiosk: &Kiosk, out: &mut Vec<Action>) -> Option<Nav> {
        title(ui, kiosk.t(T::SetupTitle), Some(kiosk.t(T::SetupIntro)));
        self.wizard.show(ui, kiosk, out)
    }

    pub fn on_reply(&mut self, out: &mut Vec<Action>, reply: &store_worker::Event) -> Option<Nav> {
        self.wizard.on_reply(out, reply)
    }

    pub fn on_event(&mut self, kiosk: &Kiosk, out: &mut Vec<Action>, event: &Event) -> Option<Nav> {
        self.wizard.on_event(kiosk, out, event)
    }
}

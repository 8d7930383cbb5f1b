//! First start: the store has no administrator. The enrollment wizard,
//! fixed to the administrator role, creates the first one with their face.

use eframe::egui::Ui;

use super::enroll::Enroll;
use super::Nav;
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
    pub fn show(&mut self, ui: &mut Ui, kiosk: &mut Kiosk) -> Option<Nav> {
        title(ui, kiosk.t(T::SetupTitle), Some(kiosk.t(T::SetupIntro)));
        self.wizard.show(ui, kiosk)
    }

    pub fn on_reply(&mut self, kiosk: &mut Kiosk, reply: &store_worker::Event) -> Option<Nav> {
        self.wizard.on_reply(kiosk, reply)
    }

    pub fn on_event(&mut self, kiosk: &mut Kiosk, event: &Event) -> Option<Nav> {
        self.wizard.on_event(kiosk, event)
    }
}

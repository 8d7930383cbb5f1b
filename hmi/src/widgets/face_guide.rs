//! What is drawn over the camera preview: an oval where the face belongs,
//! coloured by how the frame is (grey: nobody there, yellow: adjust, green:
//! good); the current quality hint as a chip at the top, where the eye
//! already is; and a caption strip at the bottom, kept free for the screen's
//! prompt, or the head-turn challenge's words under a big arrow beside the
//! oval, pointing the way the person should turn (as they face the screen).

use eframe::egui::{self, Align2, Color32, CornerRadius, FontId, Pos2, Rect, Stroke, Ui, Vec2};

use vision::liveness::Turn;

use super::{icons, Icon};
use crate::theme;

/// Height of the caption strip at the preview's bottom edge.
pub const CAPTION_HEIGHT: f32 = 52.0;

/// How the current frame stands, for the guide's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuideState {
    NoFace,
    Adjust,
    Good,
}

/// Everything drawn over one preview image.
pub struct Overlay<'a> {
    pub state: GuideState,
    /// The detected face, in screen coordinates.
    pub face: Option<Rect>,
    pub hint: Option<(Icon, &'a str)>,
    pub caption: Option<&'a str>,
    /// The head turn asked for and its words; over the caption.
    pub challenge: Option<(Turn, &'a str)>,
}

/// The challenge arrow's size: readable from a step back.
const ARROW_SIZE: f32 = 120.0;

/// The oval the face should fill: centred above the caption strip, about
/// as a face at arm's length fills a 4:3 frame.
pub fn guide_oval(image: Rect) -> (Pos2, Vec2) {
    let area = Rect::from_min_max(
        image.min,
        egui::pos2(image.max.x, image.max.y - CAPTION_HEIGHT),
    );
    let radius = egui::vec2(area.height() * 0.30, area.height() * 0.40);
    (area.center(), radius)
}

/// Paints `overlay` over the image drawn at `image`.
pub fn paint(ui: &Ui, image: Rect, overlay: &Overlay<'_>) {
    let p = theme::palette(ui.ctx());
    let painter = ui.painter_at(image);
    let colour = match overlay.state {
        GuideState::NoFace => Color32::from_white_alpha(200),
        GuideState::Adjust => p.accent,
        GuideState::Good => p.good,
    };
    let (centre, radius) = guide_oval(image);
    // A dark halo under the line keeps it visible on a white wall.
    painter.add(egui::Shape::ellipse_stroke(
        centre,
        radius,
        Stroke::new(p.stroke + 6.0, Color32::from_black_alpha(110)),
    ));
    painter.add(egui::Shape::ellipse_stroke(
        centre,
        radius,
        Stroke::new(p.stroke + 2.0, colour),
    ));
    if let Some(face) = overlay.face {
        corners(&painter, face, Stroke::new(p.stroke + 1.0, colour));
    }
    if let Some((icon, text)) = overlay.hint {
        chip(&painter, image, icon, text, p.accent);
    }
    let strip = Rect::from_min_max(
        egui::pos2(image.min.x, image.max.y - CAPTION_HEIGHT),
        image.max,
    );
    let bottom = CornerRadius {
        sw: 16,
        se: 16,
        ..CornerRadius::ZERO
    };
    painter.rect_filled(strip, bottom, Color32::from_black_alpha(170));
    if let Some((turn, words)) = overlay.challenge {
        arrow(&painter, image, turn, p.accent);
        painter.text(
            strip.center(),
            Align2::CENTER_CENTER,
            words,
            FontId::proportional(30.0),
            p.accent,
        );
    } else if let Some(caption) = overlay.caption {
        painter.text(
            strip.center(),
            Align2::CENTER_CENTER,
            caption,
            FontId::proportional(24.0),
            p.text,
        );
    }
}

/// A big arrow on a dark disc beside the oval, on the side the person
/// should turn to: their left is the screen's left as they face it.
fn arrow(painter: &egui::Painter, image: Rect, turn: Turn, colour: Color32) {
    let (centre, radius) = guide_oval(image);
    let (icon, side) = match turn {
        Turn::Left => (icons::ICON_ARROW_BACK, -1.0),
        Turn::Right => (icons::ICON_ARROW_FORWARD, 1.0),
    };
    // Between the oval and the image's edge, clear of both; smaller on a
    // small preview.
    let room = image.width() / 2.0 - radius.x;
    let size = ARROW_SIZE.min(room * 0.75);
    let at = egui::pos2(centre.x + side * (radius.x + room / 2.0), centre.y);
    painter.circle_filled(at, size * 0.62, Color32::from_black_alpha(190));
    painter.text(
        at,
        Align2::CENTER_CENTER,
        icon.codepoint,
        FontId::new(size, icon.font_family()),
        colour,
    );
}

/// Corner brackets around the detected face: lighter than a full box.
fn corners(painter: &egui::Painter, r: Rect, stroke: Stroke) {
    let len = r.width().min(r.height()) * 0.22;
    for (corner, dx, dy) in [
        (r.left_top(), 1.0, 1.0),
        (r.right_top(), -1.0, 1.0),
        (r.left_bottom(), 1.0, -1.0),
        (r.right_bottom(), -1.0, -1.0),
    ] {
        painter.line_segment([corner, corner + egui::vec2(dx * len, 0.0)], stroke);
        painter.line_segment([corner, corner + egui::vec2(0.0, dy * len)], stroke);
    }
}

/// The hint as a dark rounded chip with its icon, centred at the top.
fn chip(painter: &egui::Painter, image: Rect, icon: Icon, text: &str, colour: Color32) {
    let font = FontId::proportional(26.0);
    let galley = painter.layout_no_wrap(text.to_owned(), font, colour);
    let icon_size = 30.0;
    let pad = egui::vec2(16.0, 8.0);
    let size = egui::vec2(
        icon_size + 10.0 + galley.size().x,
        galley.size().y.max(icon_size),
    ) + 2.0 * pad;
    let rect = Rect::from_center_size(
        egui::pos2(image.center().x, image.min.y + 14.0 + size.y / 2.0),
        size,
    );
    painter.rect_filled(rect, CornerRadius::same(24), Color32::from_black_alpha(200));
    painter.rect_stroke(
        rect,
        CornerRadius::same(24),
        Stroke::new(2.0, colour),
        egui::StrokeKind::Inside,
    );
    let icon_centre = egui::pos2(rect.min.x + pad.x + icon_size / 2.0, rect.center().y);
    painter.text(
        icon_centre,
        Align2::CENTER_CENTER,
        icon.codepoint,
        FontId::new(icon_size, icon.font_family()),
        colour,
    );
    let text_pos = egui::pos2(
        rect.min.x + pad.x + icon_size + 10.0,
        rect.center().y - galley.size().y / 2.0,
    );
    painter.galley(text_pos, galley, colour);
}

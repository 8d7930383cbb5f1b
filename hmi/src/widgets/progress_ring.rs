//! Enrolment progress as a ring with the count in the middle ("23 / 50"):
//! readable from a step back, where a thin bar's percentage is not.

use eframe::egui::{self, accesskit::Role, Align2, FontId, Sense, Shape, Stroke, Ui, WidgetInfo};

use crate::theme;

/// A ring of `diameter` px, filled clockwise from the top by `done / total`.
pub fn progress_ring(ui: &mut Ui, done: usize, total: usize, diameter: f32) -> egui::Response {
    let (rect, response) = ui.allocate_exact_size(egui::Vec2::splat(diameter), Sense::hover());
    let p = theme::palette(ui.ctx());
    let fraction = (done as f32 / total.max(1) as f32).clamp(0.0, 1.0);
    let width = (diameter * 0.09).max(p.stroke * 3.0);
    let radius = diameter / 2.0 - width / 2.0;
    let centre = rect.center();
    let painter = ui.painter();
    painter.circle_stroke(centre, radius, Stroke::new(width, p.panel));
    if fraction > 0.0 {
        let colour = if fraction >= 1.0 { p.good } else { p.accent };
        let steps = (96.0 * fraction).ceil().max(2.0) as usize;
        let points = (0..=steps)
            .map(|i| {
                let angle = -std::f32::consts::FRAC_PI_2
                    + std::f32::consts::TAU * fraction * i as f32 / steps as f32;
                centre + radius * egui::vec2(angle.cos(), angle.sin())
            })
            .collect();
        painter.add(Shape::line(points, Stroke::new(width, colour)));
    }
    let count = format!("{done} / {total}");
    painter.text(
        centre,
        Align2::CENTER_CENTER,
        &count,
        FontId::proportional(diameter * 0.2),
        p.text,
    );
    response.widget_info(|| WidgetInfo::labeled(Role::ProgressIndicator, true, &count));
    response
}

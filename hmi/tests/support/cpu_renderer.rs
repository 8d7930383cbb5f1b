//! A software renderer for egui_kittest snapshots: rasterises egui's
//! triangles on the CPU, so snapshot tests need neither a GPU nor wgpu
//! (a large build) and give the same pixels on every machine.
//!
//! egui's meshes carry premultiplied vertex colours and sample
//! premultiplied textures, blended in gamma space, as egui's own painters do.

use std::collections::HashMap;

use eframe::egui::{self, epaint::Primitive, Color32, ColorImage, TextureId, TexturesDelta};
use egui_kittest::TestRenderer;

#[derive(Default)]
pub struct CpuRenderer {
    textures: HashMap<TextureId, ColorImage>,
}

impl TestRenderer for CpuRenderer {
    fn handle_delta(&mut self, delta: &mut TexturesDelta) {
        for (id, d) in delta
            .set
            .iter()
            .flat_map(|(id, deltas)| deltas.iter().map(move |d| (id, d)))
        {
            let egui::ImageData::Color(image) = &d.image;
            match (d.pos, self.textures.get_mut(id)) {
                (Some([x0, y0]), Some(existing)) => {
                    let [w, h] = image.size;
                    for y in 0..h {
                        for x in 0..w {
                            let (tx, ty) = (x0 + x, y0 + y);
                            if tx < existing.size[0] && ty < existing.size[1] {
                                existing.pixels[ty * existing.size[0] + tx] =
                                    image.pixels[y * w + x];
                            }
                        }
                    }
                }
                _ => {
                    self.textures.insert(*id, ColorImage::clone(image));
                }
            }
        }
        for id in &delta.free {
            self.textures.remove(id);
        }
        delta.clear(); // applied: egui checks that no delta is dropped unseen
    }

    fn render(
        &mut self,
        ctx: &egui::Context,
        output: &egui::FullOutput,
    ) -> Result<image::RgbaImage, String> {
        let ppp = output.pixels_per_point;
        let screen = ctx.viewport_rect();
        let (w, h) = (
            (screen.width() * ppp).round() as usize,
            (screen.height() * ppp).round() as usize,
        );
        let mut buf = vec![[0.0f32, 0.0, 0.0, 1.0]; w * h];
        for clipped in ctx.tessellate(output.shapes.clone(), ppp) {
            let Primitive::Mesh(mesh) = &clipped.primitive else {
                continue;
            };
            let texture = self
                .textures
                .get(&mesh.texture_id)
                .ok_or_else(|| format!("unknown texture {:?}", mesh.texture_id))?;
            let clip = clipped.clip_rect;
            let clip = [
                (clip.min.x * ppp).max(0.0) as usize,
                (clip.min.y * ppp).max(0.0) as usize,
                ((clip.max.x * ppp).ceil() as usize).min(w),
                ((clip.max.y * ppp).ceil() as usize).min(h),
            ];
            for tri in mesh.indices.chunks_exact(3) {
                let v = [0, 1, 2].map(|i| &mesh.vertices[tri[i] as usize]);
                rasterise(
                    &mut buf,
                    w,
                    clip,
                    v.map(|v| (v.pos.x * ppp, v.pos.y * ppp)),
                    v.map(|v| v.uv),
                    v.map(|v| v.color),
                    texture,
                );
            }
        }
        let mut img = image::RgbaImage::new(w as u32, h as u32);
        for (px, c) in img.pixels_mut().zip(&buf) {
            *px = image::Rgba(c.map(|x| (x.clamp(0.0, 1.0) * 255.0).round() as u8));
        }
        Ok(img)
    }
}

fn rgba(c: Color32) -> [f32; 4] {
    c.to_array().map(|x| f32::from(x) / 255.0)
}

fn sample(t: &ColorImage, uv: egui::Pos2) -> [f32; 4] {
    // Bilinear, like the GPU painters' linear filtering.
    let [tw, th] = t.size;
    let (x, y) = (uv.x * tw as f32 - 0.5, uv.y * th as f32 - 0.5);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |dx: f32, dy: f32| {
        let px = ((x0 + dx).max(0.0) as usize).min(tw - 1);
        let py = ((y0 + dy).max(0.0) as usize).min(th - 1);
        rgba(t.pixels[py * tw + px])
    };
    let (a, b, c, d) = (at(0.0, 0.0), at(1.0, 0.0), at(0.0, 1.0), at(1.0, 1.0));
    [0, 1, 2, 3].map(|i| {
        (a[i] * (1.0 - fx) + b[i] * fx) * (1.0 - fy) + (c[i] * (1.0 - fx) + d[i] * fx) * fy
    })
}

fn rasterise(
    buf: &mut [[f32; 4]],
    width: usize,
    clip: [usize; 4],
    p: [(f32, f32); 3],
    uv: [egui::Pos2; 3],
    colour: [Color32; 3],
    texture: &ColorImage,
) {
    let area = (p[1].0 - p[0].0) * (p[2].1 - p[0].1) - (p[2].0 - p[0].0) * (p[1].1 - p[0].1);
    if area.abs() < f32::EPSILON {
        return;
    }
    let min_x = (p
        .iter()
        .map(|q| q.0)
        .fold(f32::INFINITY, f32::min)
        .floor()
        .max(0.0) as usize)
        .max(clip[0]);
    let max_x = (p
        .iter()
        .map(|q| q.0)
        .fold(f32::NEG_INFINITY, f32::max)
        .ceil() as usize)
        .min(clip[2]);
    let min_y = (p
        .iter()
        .map(|q| q.1)
        .fold(f32::INFINITY, f32::min)
        .floor()
        .max(0.0) as usize)
        .max(clip[1]);
    let max_y = (p
        .iter()
        .map(|q| q.1)
        .fold(f32::NEG_INFINITY, f32::max)
        .ceil() as usize)
        .min(clip[3]);
    let colour = colour.map(rgba);
    for y in min_y..max_y {
        for x in min_x..max_x {
            let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
            let edge = |a: (f32, f32), b: (f32, f32)| {
                ((b.0 - a.0) * (cy - a.1) - (b.1 - a.1) * (cx - a.0)) / area
            };
            let wts = [edge(p[1], p[2]), edge(p[2], p[0]), edge(p[0], p[1])];
            if wts.iter().any(|&w| w < 0.0) {
                continue;
            }
            let uv = egui::pos2(
                wts[0] * uv[0].x + wts[1] * uv[1].x + wts[2] * uv[2].x,
                wts[0] * uv[0].y + wts[1] * uv[1].y + wts[2] * uv[2].y,
            );
            let texel = sample(texture, uv);
            let src: [f32; 4] = [0, 1, 2, 3].map(|i| {
                (wts[0] * colour[0][i] + wts[1] * colour[1][i] + wts[2] * colour[2][i]) * texel[i]
            });
            let dst = &mut buf[y * width + x];
            for i in 0..4 {
                dst[i] = src[i] + dst[i] * (1.0 - src[3]);
            }
        }
    }
}

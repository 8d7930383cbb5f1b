//! The face recogniser with the shape of OpenCV's `LBPHFaceRecognizer`.

use std::collections::BTreeMap;
use std::path::Path;

use image::GrayImage;
use rayon::prelude::*;

use super::{opencv_file, Gallery, LbphParams, Match, Template};
use crate::Error;

/// OpenCV's answer to `predict`: the nearest label, or none when no template
/// is nearer than the threshold (OpenCV's -1 and `DBL_MAX`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub label: Option<i32>,
    pub distance: f64,
}

/// An LBPH face recogniser: parameters, enrolled templates, and the names
/// behind the integer labels (OpenCV's "label info").
#[derive(Debug, Clone)]
pub struct Lbph {
    params: LbphParams,
    gallery: Gallery,
    label_info: BTreeMap<i32, String>,
}

impl Lbph {
    pub fn new(params: LbphParams) -> Result<Self, Error> {
        params.validate()?;
        Ok(Self {
            params,
            gallery: Gallery::new(params),
            label_info: BTreeMap::new(),
        })
    }

    pub(crate) fn from_parts(
        params: LbphParams,
        gallery: Gallery,
        label_info: BTreeMap<i32, String>,
    ) -> Self {
        Self {
            params,
            gallery,
            label_info,
        }
    }

    pub fn params(&self) -> &LbphParams {
        &self.params
    }

    pub fn set_threshold(&mut self, threshold: f64) -> Result<(), Error> {
        LbphParams {
            threshold,
            ..self.params
        }
        .validate()?;
        self.params.threshold = threshold;
        Ok(())
    }

    pub fn gallery(&self) -> &Gallery {
        &self.gallery
    }

    /// Replaces the model with templates of `images` (OpenCV's `train`).
    pub fn train(&mut self, images: &[GrayImage], labels: &[i32]) -> Result<(), Error> {
        let mut gallery = Gallery::new(self.params);
        self.extend(&mut gallery, images, labels)?;
        self.gallery = gallery;
        Ok(())
    }

    /// Adds templates of `images` to the model (OpenCV's `update`): no
    /// retraining, the existing templates stay as they are.
    pub fn update(&mut self, images: &[GrayImage], labels: &[i32]) -> Result<(), Error> {
        let mut gallery = std::mem::replace(&mut self.gallery, Gallery::new(self.params));
        let result = self.extend(&mut gallery, images, labels);
        self.gallery = gallery;
        result
    }

    /// Makes room for `additional` more templates without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        self.gallery.reserve(additional);
    }

    /// Adds one template computed elsewhere (the kiosk, the offload service).
    pub fn add_template(&mut self, label: i32, template: Template) -> Result<(), Error> {
        self.gallery.add(label, template)
    }

    /// Adds templates of `images` to `gallery`, a few at a time so that
    /// only those few are ever held unpacked; a bad image removes what was
    /// added, leaving the gallery unchanged.
    fn extend(
        &self,
        gallery: &mut Gallery,
        images: &[GrayImage],
        labels: &[i32],
    ) -> Result<(), Error> {
        /// Templates extracted at a time: enough for every core.
        const BATCH: usize = 64;
        if images.len() != labels.len() {
            return Err(Error::LabelCountMismatch {
                images: images.len(),
                labels: labels.len(),
            });
        }
        let before = gallery.len();
        let result =
            images
                .chunks(BATCH)
                .zip(labels.chunks(BATCH))
                .try_for_each(|(images, labels)| {
                    let templates: Vec<Template> = images
                        .par_iter()
                        .map(|img| Template::extract(&self.params, img))
                        .collect::<Result<_, _>>()?;
                    templates
                        .into_iter()
                        .zip(labels)
                        .try_for_each(|(t, &label)| gallery.add(label, t))
                });
        if result.is_err() {
            gallery.truncate(before);
        }
        result
    }

    /// Removes every template of one person, and their name.
    pub fn remove_label(&mut self, label: i32) -> usize {
        self.label_info.remove(&label);
        self.gallery.remove_label(label)
    }

    /// The nearest label with its distance (OpenCV's `predict`).
    pub fn predict(&self, face: &GrayImage) -> Result<Prediction, Error> {
        let best = self.top_k(face, 1)?.into_iter().next();
        Ok(Prediction {
            label: best.map(|m| m.label),
            distance: best.map_or(f64::MAX, |m| m.distance),
        })
    }

    /// The `k` nearest distinct labels, nearest first.
    pub fn top_k(&self, face: &GrayImage, k: usize) -> Result<Vec<Match>, Error> {
        self.search(&Template::extract(&self.params, face)?, k)
    }

    /// [`Lbph::top_k`] for a template computed elsewhere.
    pub fn search(&self, probe: &Template, k: usize) -> Result<Vec<Match>, Error> {
        if self.gallery.is_empty() {
            return Err(Error::EmptyModel);
        }
        self.gallery.search(probe, k, self.params.threshold)
    }

    pub fn set_label_info(&mut self, label: i32, info: impl Into<String>) {
        self.label_info.insert(label, info.into());
    }

    pub fn label_info(&self, label: i32) -> Option<&str> {
        self.label_info.get(&label).map(String::as_str)
    }

    /// All names, by label.
    pub fn label_infos(&self) -> &BTreeMap<i32, String> {
        &self.label_info
    }

    /// Loads a model written by OpenCV's `write()` (or by [`Lbph::save`]).
    pub fn load(path: &Path) -> Result<Self, Error> {
        opencv_file::read(path)
    }

    /// Writes the model in OpenCV's YAML format, atomically: a temporary file
    /// in the same folder, flushed to disk, then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        opencv_file::write(self, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lbph::distance::tests::face_image;

    fn face(seed: u32) -> GrayImage {
        face_image(seed, 92, 112)
    }

    /// Images are extracted a batch at a time; a bad one in a later batch
    /// still leaves the model as it was, for `update` and for `train`.
    #[test]
    fn a_bad_image_after_the_first_batch_changes_nothing() {
        let mut model = Lbph::new(LbphParams::default()).unwrap();
        model.train(&[face(1), face(2)], &[1, 2]).unwrap();
        let before = model.gallery().template(1);
        let mut images: Vec<GrayImage> = (10..210).map(face).collect();
        images[150] = GrayImage::new(4, 4);
        let labels: Vec<i32> = (10..210).collect();
        for train in [false, true] {
            let result = if train {
                model.train(&images, &labels)
            } else {
                model.update(&images, &labels)
            };
            assert!(matches!(result, Err(Error::ImageTooSmall { .. })));
            assert_eq!(model.gallery().labels(), &[1, 2]);
            assert_eq!(model.gallery().template(1), before);
        }
        images[150] = face(160);
        model.update(&images, &labels).unwrap();
        assert_eq!(model.gallery().len(), 202);
        assert_eq!(model.predict(&face(160)).unwrap().label, Some(160));
    }
}

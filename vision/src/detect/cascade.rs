//! OpenCV's cascade file (the "new" format that `opencv_traincascade`
//! writes and OpenCV ships): a boosted cascade of Haar stumps.
//!
//! Every field the detector relies on is checked; anything else (an old
//! `opencv-haar-classifier` file, LBP features, trees deeper than a stump,
//! tilted features, a feature index out of range, a rectangle outside the
//! window) is named in a [`CascadeProblem`].

use std::path::Path;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::Error;

/// The largest cascade file read (OpenCV's frontal-face cascade is 0.9 MB).
const MAX_CASCADE_BYTES: u64 = 64 << 20;

/// Why a cascade file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CascadeProblem {
    #[error("{0}")]
    Unreadable(#[source] Box<Error>),
    #[error("it is not UTF-8 text")]
    NotText(#[source] std::str::Utf8Error),
    #[error("XML syntax error at byte {position}: {source}")]
    Xml {
        position: u64,
        #[source]
        source: quick_xml::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// One weak classifier: a stump on one feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stump {
    pub feature: usize,
    pub threshold: f32,
    /// Vote when the feature's value is below the threshold.
    pub left: f32,
    /// Vote otherwise.
    pub right: f32,
}

/// A stage: the window passes when its stumps' votes reach the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The file's threshold less OpenCV's 1e-5 (in `f32`, as OpenCV does).
    pub threshold: f32,
    pub stumps: Vec<Stump>,
}

/// A rectangle of a Haar feature, in window pixels, and its weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightedRect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub weight: f32,
}

/// A Haar feature: two or three weighted rectangles.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub rects: Vec<WeightedRect>,
}

/// A parsed, checked cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    pub window_width: u32,
    pub window_height: u32,
    pub stages: Vec<Stage>,
    pub features: Vec<Feature>,
}

/// OpenCV subtracts this from every stage threshold when it loads a cascade.
const THRESHOLD_EPS: f32 = 1e-5;

impl Cascade {
    /// Reads and checks a cascade file; every problem is
    /// [`Error::BadCascade`] naming the file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bad = |problem| Error::BadCascade {
            path: path.to_owned(),
            problem,
        };
        let bytes = crate::files::read_limited(path, MAX_CASCADE_BYTES, "a cascade file")
            .map_err(|e| bad(CascadeProblem::Unreadable(Box::new(e))))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| bad(CascadeProblem::NotText(e)))?;
        Self::parse(text).map_err(bad)
    }

    /// Parses the text of a cascade file.
    pub fn parse(text: &str) -> Result<Self, CascadeProblem> {
        let root = parse_tree(text)?;
        if root.name != "opencv_storage" {
            return Err(invalid(format!(
                "the document is <{}>, not OpenCV's <opencv_storage>",
                root.name
            )));
        }
        let cascade = root
            .children
            .first()
            .ok_or_else(|| invalid("<opencv_storage> is empty".into()))?;
        if cascade.children.iter().any(|c| c.name == "stages") {
            read_cascade(cascade)
        } else if cascade.attribute_type.as_deref() == Some("opencv-haar-classifier") {
            Err(invalid(format!(
                "<{}> is OpenCV's old cascade format; use one in the new format (opencv_traincascade's)",
                cascade.name
            )))
        } else {
            Err(invalid(format!("<{}> has no <stages>", cascade.name)))
        }
    }
}

fn invalid(message: String) -> CascadeProblem {
    CascadeProblem::Invalid(message)
}

/// An XML element: its name, `type_id` attribute, child elements and text.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attribute_type: Option<String>,
    children: Vec<Node>,
    text: String,
}

impl Node {
    fn child(&self, name: &str, at: &str) -> Result<&Node, CascadeProblem> {
        let mut found = self.children.iter().filter(|c| c.name == name);
        match (found.next(), found.next()) {
            (Some(node), None) => Ok(node),
            (None, _) => Err(invalid(format!("{at}: <{name}> is missing"))),
            (Some(_), Some(_)) => Err(invalid(format!("{at}: <{name}> appears twice"))),
        }
    }

    fn leaf_text(&self, at: &str) -> Result<&str, CascadeProblem> {
        if !self.children.is_empty() {
            return Err(invalid(format!(
                "{at}: <{}> holds elements where a value belongs",
                self.name
            )));
        }
        Ok(self.text.trim())
    }

    fn int(&self, name: &str, at: &str) -> Result<i64, CascadeProblem> {
        let text = self.child(name, at)?.leaf_text(at)?;
        text.parse()
            .map_err(|_| invalid(format!("{at}: <{name}> is {text:?}, not an integer")))
    }

    /// The element's list of numbers, each read as OpenCV reads it: a
    /// double, then narrowed where the field is `float`.
    fn numbers(&self, at: &str) -> Result<Vec<f64>, CascadeProblem> {
        self.leaf_text(at)?
            .split_ascii_whitespace()
            .map(|word| {
                word.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        invalid(format!(
                            "{at}: <{}> holds {word:?}, not a number",
                            self.name
                        ))
                    })
            })
            .collect()
    }
}

fn parse_tree(text: &str) -> Result<Node, CascadeProblem> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|source| CascadeProblem::Xml { position, source })?;
        let open = |start: &quick_xml::events::BytesStart| -> Result<Node, CascadeProblem> {
            let mut node = Node {
                name: String::from_utf8_lossy(start.name().as_ref()).into_owned(),
                ..Node::default()
            };
            for attribute in start.attributes() {
                let attribute = attribute.map_err(|e| CascadeProblem::Xml {
                    position,
                    source: e.into(),
                })?;
                if attribute.key.as_ref() == b"type_id" {
                    node.attribute_type =
                        Some(String::from_utf8_lossy(&attribute.value).into_owned());
                }
            }
            Ok(node)
        };
        match event {
            Event::Start(start) => stack.push(open(&start)?),
            Event::Empty(start) => {
                let node = open(&start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err(invalid("more than one document element".into())),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or_else(|| {
                    invalid(format!(
                        "a closing tag without an opening one at byte {position}"
                    ))
                })?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err(invalid("more than one document element".into())),
                }
            }
            Event::Text(content) => {
                if let Some(node) = stack.last_mut() {
                    node.text
                        .push_str(&String::from_utf8_lossy(&content.into_inner()));
                }
            }
            Event::CData(content) => {
                if let Some(node) = stack.last_mut() {
                    node.text
                        .push_str(&String::from_utf8_lossy(&content.into_inner()));
                }
            }
            Event::GeneralRef(_) => {
                return Err(invalid(format!(
                    "an entity reference at byte {position}, where a cascade has none"
                )))
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(invalid(format!(
            "the file ends inside <{}> (truncated?)",
            open.name
        )));
    }
    root.ok_or_else(|| invalid("the file holds no XML element".into()))
}

fn read_cascade(node: &Node) -> Result<Cascade, CascadeProblem> {
    let at = format!("<{}>", node.name);
    let text_of = |name: &str| -> Result<String, CascadeProblem> {
        Ok(node.child(name, &at)?.leaf_text(&at)?.to_owned())
    };
    let stage_type = text_of("stageType")?;
    if stage_type != "BOOST" {
        return Err(invalid(format!(
            "{at}: stageType is {stage_type:?}; only BOOST cascades exist"
        )));
    }
    let feature_type = text_of("featureType")?;
    if feature_type != "HAAR" {
        return Err(invalid(format!(
            "{at}: featureType is {feature_type:?}; this detector evaluates HAAR features only"
        )));
    }
    let size = |name: &str| -> Result<u32, CascadeProblem> {
        let v = node.int(name, &at)?;
        u32::try_from(v)
            .ok()
            .filter(|v| (1..=1024).contains(v))
            .ok_or_else(|| invalid(format!("{at}: <{name}> is {v}, not a window size")))
    };
    let (window_width, window_height) = (size("width")?, size("height")?);
    let params_at = format!("{at} <featureParams>");
    let categories = node
        .child("featureParams", &at)?
        .int("maxCatCount", &params_at)?;
    if categories != 0 {
        return Err(invalid(format!(
            "{params_at}: maxCatCount is {categories}; Haar features are not categorical"
        )));
    }
    let stages_node = node.child("stages", &at)?;
    let stage_count = node.int("stageNum", &at)?;
    if stage_count != stages_node.children.len() as i64 || stage_count == 0 {
        return Err(invalid(format!(
            "{at}: stageNum is {stage_count} but <stages> holds {}",
            stages_node.children.len()
        )));
    }
    let features_node = node.child("features", &at)?;
    let features = features_node
        .children
        .iter()
        .enumerate()
        .map(|(i, f)| read_feature(f, &format!("feature {i}"), window_width, window_height))
        .collect::<Result<Vec<_>, _>>()?;
    if features.is_empty() {
        return Err(invalid(format!("{at}: <features> is empty")));
    }
    let stages = stages_node
        .children
        .iter()
        .enumerate()
        .map(|(i, s)| read_stage(s, &format!("stage {i}"), features.len()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Cascade {
        window_width,
        window_height,
        stages,
        features,
    })
}

fn read_stage(node: &Node, at: &str, feature_count: usize) -> Result<Stage, CascadeProblem> {
    let threshold = node.child("stageThreshold", at)?.numbers(at)?;
    let [threshold] = threshold[..] else {
        return Err(invalid(format!("{at}: <stageThreshold> is not one number")));
    };
    let weak = node.child("weakClassifiers", at)?;
    let declared = node.int("maxWeakCount", at)?;
    if declared != weak.children.len() as i64 || declared == 0 {
        return Err(invalid(format!(
            "{at}: maxWeakCount is {declared} but <weakClassifiers> holds {}",
            weak.children.len()
        )));
    }
    let stumps = weak
        .children
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let at = format!("{at}, weak classifier {i}");
            let nodes = w.child("internalNodes", &at)?.numbers(&at)?;
            let leaves = w.child("leafValues", &at)?.numbers(&at)?;
            let [left_node, right_node, feature, threshold] = nodes[..] else {
                return Err(invalid(format!(
                    "{at}: <internalNodes> holds {} numbers; a stump has 4 (deeper trees are not supported)",
                    nodes.len()
                )));
            };
            if left_node != 0.0 || right_node != -1.0 {
                return Err(invalid(format!(
                    "{at}: <internalNodes> links {left_node} and {right_node}, not a stump's 0 -1"
                )));
            }
            if feature.fract() != 0.0 || feature < 0.0 || feature >= feature_count as f64 {
                return Err(invalid(format!(
                    "{at}: feature index {feature} is not one of the {feature_count} features"
                )));
            }
            let [left, right] = leaves[..] else {
                return Err(invalid(format!(
                    "{at}: <leafValues> holds {} numbers, not a stump's 2",
                    leaves.len()
                )));
            };
            Ok(Stump {
                feature: feature as usize,
                threshold: threshold as f32,
                left: left as f32,
                right: right as f32,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Stage {
        threshold: threshold as f32 - THRESHOLD_EPS,
        stumps,
    })
}

fn read_feature(node: &Node, at: &str, width: u32, height: u32) -> Result<Feature, CascadeProblem> {
    if let Some(tilted) = node.children.iter().find(|c| c.name == "tilted") {
        if tilted.leaf_text(at)? != "0" {
            return Err(invalid(format!("{at}: tilted features are not supported")));
        }
    }
    let rects_node = node.child("rects", at)?;
    if !(2..=3).contains(&rects_node.children.len()) {
        return Err(invalid(format!(
            "{at}: {} rectangles; a Haar feature has 2 or 3",
            rects_node.children.len()
        )));
    }
    let rects = rects_node
        .children
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("{at}, rectangle {i}");
            let v = r.numbers(&at)?;
            let [x, y, w, h, weight] = v[..] else {
                return Err(invalid(format!(
                    "{at}: {} numbers, not x y width height weight",
                    v.len()
                )));
            };
            let whole = |v: f64| v.fract() == 0.0 && (0.0..=1024.0).contains(&v);
            if !(whole(x) && whole(y) && whole(w) && whole(h))
                || w == 0.0
                || h == 0.0
                || x + w > width as f64
                || y + h > height as f64
            {
                return Err(invalid(format!(
                    "{at}: {x} {y} {w} {h} is not a rectangle inside the {width} × {height} window"
                )));
            }
            Ok(WeightedRect {
                x: x as u32,
                y: y as u32,
                width: w as u32,
                height: h as u32,
                weight: weight as f32,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Feature { rects })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../assets/cascades")
            .join(super::super::CASCADE_FILE);
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn the_shipped_cascade_parses_with_its_declared_counts() {
        let cascade = Cascade::parse(&shipped()).unwrap();
        assert_eq!((cascade.window_width, cascade.window_height), (24, 24));
        assert_eq!(cascade.stages.len(), 25);
        assert_eq!(cascade.stages[0].stumps.len(), 9);
        assert_eq!(
            cascade.stages.iter().map(|s| s.stumps.len()).sum::<usize>(),
            2913
        );
        assert_eq!(cascade.features.len(), 2913);
        // The first stump of the file: "0 -1 0 -3.1511999666690826e-02".
        assert_eq!(
            cascade.stages[0].stumps[0].threshold,
            -3.1511999666690826e-02f64 as f32
        );
        assert_eq!(
            cascade.stages[0].threshold,
            -5.0425500869750977f64 as f32 - 1e-5
        );
    }

    fn problem(text: &str) -> String {
        Cascade::parse(text)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn damaged_and_foreign_files_name_the_problem() {
        let full = shipped();
        let half = full.len() / 2;
        let mid_tag = &full[..full[half..].find('<').unwrap() + half + 3];
        assert!(
            problem(mid_tag).contains("XML syntax error"),
            "{}",
            problem(mid_tag)
        );
        let between_tags = &full[..full[half..].find("</_>").unwrap() + half + 4];
        assert!(
            problem(between_tags).contains("ends inside <"),
            "{}",
            problem(between_tags)
        );
        assert!(problem("<html><body/></html>").contains("not OpenCV's"));
        assert!(problem("not xml at all").contains("no XML element"));
        let old = "<opencv_storage><haarcascade_frontalface_alt type_id=\"opencv-haar-classifier\"><size>20 20</size></haarcascade_frontalface_alt></opencv_storage>";
        assert!(problem(old).contains("old cascade format"));
        let lbp = full.replace(
            "<featureType>HAAR</featureType>",
            "<featureType>LBP</featureType>",
        );
        assert!(problem(&lbp).contains("HAAR features only"));
        let count = full.replace("<stageNum>25</stageNum>", "<stageNum>24</stageNum>");
        assert!(problem(&count).contains("stageNum is 24"));
        let index = full.replacen(
            "0 -1 0 -3.1511999666690826e-02",
            "0 -1 99999 -3.1511999666690826e-02",
            1,
        );
        assert!(problem(&index).contains("feature index 99999"));
        let number = full.replacen("2.0875380039215088e+00", "2.08x", 1);
        assert!(problem(&number).contains("\"2.08x\""));
        let rect = full.replacen("6 4 12 9 -1.", "6 4 30 9 -1.", 1);
        assert!(problem(&rect).contains("inside the 24 × 24 window"));
        let tree = full.replacen(
            "0 -1 0 -3.1511999666690826e-02",
            "1 2 0 -3.1511999666690826e-02",
            1,
        );
        assert!(problem(&tree).contains("not a stump"));
    }
}

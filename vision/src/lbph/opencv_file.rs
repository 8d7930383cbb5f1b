//! OpenCV's LBPH model files: the YAML that `FaceRecognizer::write()` writes.
//!
//! Only the subset of OpenCV's `FileStorage` YAML that such a file uses is
//! understood (block and flow mappings and sequences, `!!opencv-matrix`
//! tags, plain and double-quoted scalars); anything else is an error that
//! names the line. The histograms' floats are turned back into exact pixel
//! counts (see [`Template::from_opencv_histogram`]) and written out with
//! enough digits to come back bit for bit.
//!
//! A model file may come from anywhere (a share, a USB stick, a mail), so
//! the reader is bounded:
//!
//! - only a regular file of at most [`MAX_MODEL_FILE_BYTES`] is read (see
//!   [`crate::files`]): a named pipe or `/dev/zero` is an error, not a hang;
//! - nesting deeper than [`MAX_DEPTH`] levels is an error naming the line.
//!   The parser is recursive, and 100 KB of `[` used to overflow its stack
//!   and abort the process; an LBPH model nests five levels deep;
//! - NaN, infinite and negative histogram values, which no face gives and
//!   which made every distance NaN, are refused naming the template, and
//!   labels must be whole numbers.
//!
//! Models are written with [`crate::files::write_atomic`]: a reader never
//! sees half a model, the file is readable only by its owner, and what a
//! killed writer left behind is removed on the next write.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::template::Layout;
use super::{Gallery, Lbph, LbphParams, Template};
pub use crate::files::MAX_MODEL_FILE_BYTES;
use crate::Error;

/// OpenCV's name for the model's top-level node.
const ROOT: &str = "opencv_lbphfaces";

/// The deepest nesting of mappings and sequences the reader follows. An
/// LBPH model nests five levels (the root, the model, `histograms`, one
/// matrix, its `data`); 32 leaves room for any `FileStorage` YAML and keeps
/// the recursive parser far from the end of even a small thread's stack.
pub const MAX_DEPTH: usize = 32;

pub(super) fn read(path: &Path) -> Result<Lbph, Error> {
    let fail = |reason: String| Error::ModelFile {
        path: path.to_owned(),
        reason,
    };
    let bytes = crate::files::read_limited(path, MAX_MODEL_FILE_BYTES, "an OpenCV model file")?;
    let text = String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse_model(&text).map_err(fail)
}

/// A model from the text of an OpenCV YAML model file, as [`Lbph::load`]
/// reads it once the file is read; the error names the problem (and the
/// line), not the file. Public for the fuzz targets under `fuzz/`.
#[doc(hidden)]
pub fn parse_model(text: &str) -> Result<Lbph, String> {
    if text.trim_start().starts_with("<?xml") {
        return Err("XML model files are not supported: save the model as .yml".into());
    }
    let root = yaml::parse(text)?;
    let model = root
        .get(ROOT)
        .ok_or_else(|| format!("no `{ROOT}` node: not an LBPH model"))?;
    model_from_node(model)
}

fn model_from_node(model: &yaml::Node) -> Result<Lbph, String> {
    let int = |key: &str| -> Result<u32, String> {
        let v = model
            .get(key)
            .ok_or(format!("missing `{key}`"))?
            .number()
            .ok_or(format!("`{key}` is not a number"))?;
        if v.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&v) {
            return Err(format!("`{key}` is {v}, not a whole number"));
        }
        Ok(v as u32)
    };
    let mut params = LbphParams {
        radius: int("radius")?,
        neighbors: int("neighbors")?,
        grid_x: int("grid_x")?,
        grid_y: int("grid_y")?,
        ..LbphParams::default()
    };
    // As OpenCV: older files have no threshold, and 0 means "keep the default".
    if let Some(t) = model.get("threshold").and_then(yaml::Node::number) {
        if t != 0.0 {
            params.threshold = t;
        }
    }
    params.validate().map_err(|e| e.to_string())?;
    let layout = Layout::of(&params);

    let histograms = match model.get("histograms") {
        None | Some(yaml::Node::Seq(_)) | Some(yaml::Node::Numbers(_)) => model.get("histograms"),
        Some(_) => return Err("`histograms` is not a list".into()),
    };
    let histograms: Vec<&yaml::Node> = match histograms {
        Some(yaml::Node::Seq(items)) => items.iter().collect(),
        _ => Vec::new(), // `histograms: []`
    };
    let labels: Vec<i32> = match model.get("labels") {
        Some(node @ yaml::Node::Map(_)) => matrix(node, "labels")?
            .iter()
            .enumerate()
            .map(|(i, &v)| whole_label(v).ok_or(format!("label {i} is {v}, not a whole number")))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    if labels.len() != histograms.len() {
        return Err(format!(
            "{} histograms but {} labels",
            histograms.len(),
            labels.len()
        ));
    }
    let mut gallery = Gallery::new(params);
    for (i, (h, &label)) in histograms.iter().zip(&labels).enumerate() {
        let values: Vec<f32> = matrix(h, "histogram")?.iter().map(|&v| v as f32).collect();
        let template = Template::from_opencv_histogram(layout, &values)
            .map_err(|e| format!("template {i}: its histogram {e}"))?;
        gallery.add(label, template).map_err(|e| e.to_string())?;
    }
    let mut label_info = BTreeMap::new();
    if let Some(yaml::Node::Seq(items)) = model.get("labelsInfo") {
        for item in items {
            let label = item
                .get("label")
                .and_then(yaml::Node::number)
                .ok_or("a labelsInfo entry has no label")?;
            let label = whole_label(label).ok_or(format!(
                "labelsInfo has the label {label}, not a whole number"
            ))?;
            let value = item
                .get("value")
                .and_then(yaml::Node::text)
                .unwrap_or_default();
            label_info.insert(label, value.to_owned());
        }
    }
    Ok(Lbph::from_parts(params, gallery, label_info))
}

/// A label as OpenCV stores it (an `int`), or None for NaN, fractions and
/// values out of range (which `as i32` would quietly turn into others).
fn whole_label(v: f64) -> Option<i32> {
    (v.fract() == 0.0 && (i32::MIN as f64..=i32::MAX as f64).contains(&v)).then_some(v as i32)
}

/// The data of an `!!opencv-matrix` node, checked against its rows × cols.
fn matrix<'a>(node: &'a yaml::Node, what: &str) -> Result<&'a [f64], String> {
    let rows = node
        .get("rows")
        .and_then(yaml::Node::number)
        .ok_or(format!("{what} matrix has no rows"))?;
    let cols = node
        .get("cols")
        .and_then(yaml::Node::number)
        .ok_or(format!("{what} matrix has no cols"))?;
    let data: &[f64] = match node.get("data") {
        Some(yaml::Node::Numbers(v)) => v,
        Some(yaml::Node::Seq(v)) if v.is_empty() => &[],
        _ => return Err(format!("{what} matrix has no numeric data")),
    };
    if (rows * cols) as usize != data.len() {
        return Err(format!(
            "{what} matrix says {rows} × {cols} but holds {} values",
            data.len()
        ));
    }
    Ok(data)
}

pub(super) fn write(model: &Lbph, path: &Path) -> Result<(), Error> {
    crate::files::write_atomic(path, |out| write_yaml(model, out))
}

fn write_yaml(model: &Lbph, out: &mut dyn Write) -> std::io::Result<()> {
    let p = model.params();
    writeln!(out, "%YAML:1.0\n---\n{ROOT}:")?;
    writeln!(out, "   threshold: {}", float(p.threshold))?;
    writeln!(
        out,
        "   radius: {}\n   neighbors: {}\n   grid_x: {}\n   grid_y: {}",
        p.radius, p.neighbors, p.grid_x, p.grid_y
    )?;
    let gallery = model.gallery();
    if gallery.is_empty() {
        writeln!(out, "   histograms: []")?;
    } else {
        writeln!(out, "   histograms:")?;
        let scale = super::template::opencv_scale;
        for i in 0..gallery.len() {
            let t = gallery.template(i);
            let s = scale(t.cell_pixels());
            let values: Vec<f64> = t
                .exact_counts()
                .iter()
                .map(|&c| (c as f32 * s) as f64)
                .collect();
            writeln!(
                out,
                "      - !!opencv-matrix\n         rows: 1\n         cols: {}\n         dt: f",
                values.len()
            )?;
            write_data(out, "         ", values.iter().map(|&v| float(v)))?;
        }
    }
    writeln!(
        out,
        "   labels: !!opencv-matrix\n      rows: {}\n      cols: 1\n      dt: i",
        gallery.len()
    )?;
    write_data(
        out,
        "      ",
        gallery.labels().iter().map(|l| l.to_string()),
    )?;
    if model.label_infos().is_empty() {
        writeln!(out, "   labelsInfo: []")?;
    } else {
        writeln!(out, "   labelsInfo:")?;
        for (label, value) in model.label_infos() {
            writeln!(out, "      - {{ label:{label}, value:{} }}", quote(value))?;
        }
    }
    Ok(())
}

/// `data: [ … ]`, wrapped a few values a line as OpenCV does.
fn write_data(
    out: &mut dyn Write,
    indent: &str,
    values: impl Iterator<Item = String>,
) -> std::io::Result<()> {
    write!(out, "{indent}data: [")?;
    for (i, v) in values.enumerate() {
        if i > 0 {
            write!(out, ",")?;
            if i % 8 == 0 {
                write!(out, "\n{indent}   ")?;
            }
        }
        write!(out, " {v}")?;
    }
    writeln!(out, " ]")
}

/// A float as OpenCV can read it back exactly: zero as OpenCV writes it, the
/// rest as the shortest decimal that parses back to the same double.
fn float(v: f64) -> String {
    if v == 0.0 {
        "0.".into()
    } else {
        format!("{v:e}")
    }
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The YAML subset of OpenCV's `FileStorage`.
mod yaml {
    use super::{MAX_DEPTH, MAX_MODEL_FILE_BYTES};

    pub enum Node {
        Map(Vec<(String, Node)>),
        Seq(Vec<Node>),
        /// A flow sequence of numbers, kept compact (histograms are long).
        Numbers(Vec<f64>),
        Scalar(String),
    }

    impl Node {
        pub fn get(&self, key: &str) -> Option<&Node> {
            match self {
                Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn number(&self) -> Option<f64> {
            match self {
                Node::Scalar(s) => parse_number(s),
                _ => None,
            }
        }
        pub fn text(&self) -> Option<&str> {
            match self {
                Node::Scalar(s) => Some(s),
                _ => None,
            }
        }
    }

    fn parse_number(s: &str) -> Option<f64> {
        match s {
            ".Inf" | ".inf" => Some(f64::INFINITY),
            "-.Inf" | "-.inf" => Some(f64::NEG_INFINITY),
            ".Nan" | ".nan" => Some(f64::NAN),
            _ => s.parse().ok(),
        }
    }

    /// Parses `text`: at most [`MAX_MODEL_FILE_BYTES`] of it, nested at most
    /// [`MAX_DEPTH`] levels deep.
    pub fn parse(text: &str) -> Result<Node, String> {
        if text.len() as u64 > MAX_MODEL_FILE_BYTES {
            return Err(format!(
                "{} bytes, over the limit of {MAX_MODEL_FILE_BYTES} bytes for a model",
                text.len()
            ));
        }
        let mut p = Parser {
            s: text.as_bytes(),
            pos: 0,
            depth: 0,
        };
        p.skip_header()?;
        p.block(0)
    }

    struct Parser<'a> {
        s: &'a [u8],
        pos: usize,
        /// Mappings and sequences open around `pos`.
        depth: usize,
    }

    impl Parser<'_> {
        /// Enters one more level of nesting, or fails past [`MAX_DEPTH`].
        /// (No need to leave on an error: the whole parse ends with it.)
        fn enter(&mut self) -> Result<(), String> {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return self.err(&format!(
                    "nested more than {MAX_DEPTH} levels deep: not an OpenCV model"
                ));
            }
            Ok(())
        }

        fn line(&self) -> usize {
            self.s[..self.pos.min(self.s.len())]
                .iter()
                .filter(|&&c| c == b'\n')
                .count()
                + 1
        }

        fn err<T>(&self, msg: &str) -> Result<T, String> {
            Err(format!("line {}: {msg}", self.line()))
        }

        fn peek(&self) -> Option<u8> {
            self.s.get(self.pos).copied()
        }

        fn skip_header(&mut self) -> Result<(), String> {
            let text = std::str::from_utf8(self.s).map_err(|_| "not UTF-8 text".to_string())?;
            if !(text.starts_with("%YAML:1.") || text.starts_with("%YAML 1.")) {
                return self.err("not an OpenCV YAML file (no %YAML header)");
            }
            self.skip_line();
            self.skip_blank_lines();
            if self.s[self.pos..].starts_with(b"---") {
                self.skip_line();
            }
            Ok(())
        }

        fn skip_line(&mut self) {
            while let Some(c) = self.peek() {
                self.pos += 1;
                if c == b'\n' {
                    break;
                }
            }
        }

        fn skip_spaces(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
                self.pos += 1;
            }
        }

        /// Skips empty and comment lines; leaves `pos` at a line's start.
        fn skip_blank_lines(&mut self) {
            loop {
                let start = self.pos;
                self.skip_spaces();
                match self.peek() {
                    Some(b'\n') => self.pos += 1,
                    Some(b'#') => self.skip_line(),
                    _ => {
                        self.pos = start;
                        return;
                    }
                }
            }
        }

        /// Indentation of the next non-blank line, or None at the end.
        fn next_indent(&mut self) -> Option<usize> {
            self.skip_blank_lines();
            let indent = self.s[self.pos..]
                .iter()
                .take_while(|&&c| c == b' ')
                .count();
            (self.pos + indent < self.s.len()).then_some(indent)
        }

        /// A block mapping or sequence whose lines are indented at least `min`.
        fn block(&mut self, min: usize) -> Result<Node, String> {
            let Some(indent) = self.next_indent().filter(|&i| i >= min) else {
                return Ok(Node::Scalar(String::new()));
            };
            self.enter()?;
            let node = self.block_at(indent)?;
            self.depth -= 1;
            Ok(node)
        }

        fn block_at(&mut self, indent: usize) -> Result<Node, String> {
            let is_seq = self.s[self.pos + indent] == b'-'
                && matches!(
                    self.s.get(self.pos + indent + 1),
                    Some(b' ' | b'\n' | b'\r') | None
                );
            if is_seq {
                let mut items = Vec::new();
                while self.next_indent() == Some(indent) && self.s[self.pos + indent] == b'-' {
                    self.pos += indent + 1;
                    items.push(self.value(indent + 1)?);
                }
                Ok(Node::Seq(items))
            } else {
                let mut entries = Vec::new();
                while self.next_indent() == Some(indent) {
                    self.pos += indent;
                    let key = self.key(b":")?;
                    entries.push((key, self.value(indent + 1)?));
                }
                Ok(Node::Map(entries))
            }
        }

        /// The value after a key or a `-`: on this line, or a nested block.
        fn value(&mut self, nested_min: usize) -> Result<Node, String> {
            self.skip_spaces();
            if self.s[self.pos..].starts_with(b"!!") {
                while !matches!(self.peek(), Some(b' ' | b'\n') | None) {
                    self.pos += 1;
                }
                self.skip_spaces();
            }
            match self.peek() {
                None | Some(b'\n') | Some(b'#') => {
                    self.skip_line();
                    self.block(nested_min)
                }
                Some(b'[' | b'{') => {
                    let node = self.flow()?;
                    self.skip_spaces();
                    if !matches!(self.peek(), None | Some(b'\n' | b'#')) {
                        return self.err("unexpected text after a closing bracket");
                    }
                    self.skip_line();
                    Ok(node)
                }
                _ => {
                    let node = Node::Scalar(self.scalar(b"\n")?);
                    self.skip_line();
                    Ok(node)
                }
            }
        }

        fn key(&mut self, end: &[u8]) -> Result<String, String> {
            self.skip_spaces();
            let key = if self.peek() == Some(b'"') {
                self.quoted()?
            } else {
                let start = self.pos;
                while !matches!(self.peek(), Some(b':' | b'\n') | None) {
                    self.pos += 1;
                }
                String::from_utf8_lossy(&self.s[start..self.pos])
                    .trim()
                    .to_owned()
            };
            self.skip_spaces();
            if self.peek() != Some(b':') || key.is_empty() {
                return self.err("expected `key:`");
            }
            self.pos += 1;
            let _ = end;
            Ok(key)
        }

        fn flow(&mut self) -> Result<Node, String> {
            self.enter()?;
            let node = self.flow_inner()?;
            self.depth -= 1;
            Ok(node)
        }

        fn flow_inner(&mut self) -> Result<Node, String> {
            let open = self.peek().unwrap();
            let close = if open == b'[' { b']' } else { b'}' };
            self.pos += 1;
            let mut numbers = Vec::new();
            let mut items = Vec::new();
            let mut entries = Vec::new();
            loop {
                self.skip_flow_space();
                match self.peek() {
                    None => return self.err("unclosed bracket"),
                    Some(c) if c == close => {
                        self.pos += 1;
                        break;
                    }
                    _ => {}
                }
                if open == b'{' {
                    let key = self.key(b",}")?;
                    self.skip_flow_space();
                    entries.push((key, self.flow_item(b",}")?));
                } else {
                    match self.flow_item(b",]")? {
                        Node::Scalar(s) if items.is_empty() => match parse_number(&s) {
                            Some(v) => numbers.push(v),
                            None => items.push(Node::Scalar(s)),
                        },
                        node => items.push(node),
                    }
                }
                self.skip_flow_space();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(c) if c == close => {}
                    _ => return self.err("expected `,` or a closing bracket"),
                }
            }
            Ok(match open {
                b'{' => Node::Map(entries),
                _ if items.is_empty() && !numbers.is_empty() => Node::Numbers(numbers),
                _ if numbers.is_empty() => Node::Seq(items),
                _ => return self.err("a list mixes numbers and other values"),
            })
        }

        fn skip_flow_space(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                self.pos += 1;
            }
        }

        fn flow_item(&mut self, ends: &[u8]) -> Result<Node, String> {
            match self.peek() {
                Some(b'[' | b'{') => self.flow(),
                _ => Ok(Node::Scalar(self.scalar(ends)?)),
            }
        }

        fn scalar(&mut self, ends: &[u8]) -> Result<String, String> {
            if self.peek() == Some(b'"') {
                return self.quoted();
            }
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'\n' || ends.contains(&c) {
                    break;
                }
                self.pos += 1;
            }
            Ok(String::from_utf8_lossy(&self.s[start..self.pos])
                .trim()
                .to_owned())
        }

        fn quoted(&mut self) -> Result<String, String> {
            self.pos += 1;
            let mut out = Vec::new();
            loop {
                match self.peek() {
                    None | Some(b'\n') => return self.err("unterminated string"),
                    Some(b'"') => {
                        self.pos += 1;
                        break;
                    }
                    Some(b'\\') => {
                        self.pos += 1;
                        out.push(match self.peek() {
                            Some(b'n') => b'\n',
                            Some(b't') => b'\t',
                            Some(c) => c,
                            None => return self.err("unterminated string"),
                        });
                        self.pos += 1;
                    }
                    Some(c) => {
                        out.push(c);
                        self.pos += 1;
                    }
                }
            }
            String::from_utf8(out).or_else(|_| self.err("string is not UTF-8"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    fn model() -> Lbph {
        let mut m = Lbph::new(LbphParams::default()).unwrap();
        let faces: Vec<GrayImage> = (0..3)
            .map(|s| {
                GrayImage::from_fn(92, 112, |x, y| {
                    image::Luma([((x * 7 + s) ^ (y * 3 + x * s)) as u8])
                })
            })
            .collect();
        m.train(&faces, &[4, 4, 9]).unwrap();
        m.set_label_info(4, "Müller, \"Hans\"");
        m.set_label_info(9, "s9");
        m
    }

    #[test]
    fn write_then_read_is_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.yml");
        let m = model();
        m.save(&path).unwrap();
        let back = Lbph::load(&path).unwrap();
        assert_eq!(back.params(), m.params());
        assert_eq!(back.label_infos(), m.label_infos());
        assert_eq!(back.gallery().labels(), m.gallery().labels());
        for i in 0..3 {
            assert_eq!(
                back.gallery().template(i).exact_counts(),
                m.gallery().template(i).exact_counts()
            );
        }
    }

    #[test]
    fn broken_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yml");
        for (text, expect) in [
            ("hello", "no %YAML header"),
            ("%YAML:1.0\n---\nother: 1\n", "not an LBPH model"),
            ("%YAML:1.0\n---\nopencv_lbphfaces:\n   radius: 1\n", "missing `neighbors`"),
            ("%YAML:1.0\nopencv_lbphfaces:\n   radius: 1\n   neighbors: 8\n   grid_x: 8\n   grid_y: 8\n   histograms: [\n", "unclosed"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Lbph::load(&path).unwrap_err().to_string();
            assert!(err.contains(expect), "{err:?} should mention {expect:?}");
        }
    }

    fn load_text(text: &str) -> Result<Lbph, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yml");
        std::fs::write(&path, text).unwrap();
        Lbph::load(&path).map_err(|e| e.to_string())
    }

    /// The attack: about 100 KB of `[` used to overflow the parser's stack
    /// and abort the process. Run on a thread with a small stack (256 KiB),
    /// to show that the depth limit, not a big stack, is what stops it.
    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let flow = format!(
            "%YAML:1.0\n---\nopencv_lbphfaces:\n   histograms: {}\n",
            "[".repeat(100_000)
        );
        let mut block = String::from("%YAML:1.0\n---\n");
        for depth in 0..2_000 {
            block.push_str(&" ".repeat(depth));
            block.push_str("-\n");
        }
        let errors = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || [load_text(&flow), load_text(&block)])
            .unwrap()
            .join()
            .expect("no stack overflow");
        let flow_err = errors[0].as_ref().map(|_| ()).unwrap_err();
        assert!(
            flow_err.contains("line 4: nested more than 32 levels deep"),
            "{flow_err}"
        );
        let block_err = errors[1].as_ref().map(|_| ()).unwrap_err();
        assert!(block_err.contains("nested more than 32"), "{block_err}");
        // A real model's five levels are well within the limit.
        let dir = tempfile::tempdir().unwrap();
        model().save(&dir.path().join("ok.yml")).unwrap();
        assert!(Lbph::load(&dir.path().join("ok.yml")).is_ok());
    }

    /// A model of a 1 × 1 grid of 4 bins (cells of 4 pixels) with two
    /// templates, the second's data as given.
    fn tiny_model(second: &str, labels: &str) -> String {
        let matrix = |data: &str| {
            format!("      - !!opencv-matrix\n         rows: 1\n         cols: 4\n         dt: f\n         data: [ {data} ]\n")
        };
        format!(
            "%YAML:1.0\n---\nopencv_lbphfaces:\n   threshold: 0.\n   radius: 1\n   neighbors: 2\n   grid_x: 1\n   grid_y: 1\n   histograms:\n{}{}   labels: !!opencv-matrix\n      rows: 2\n      cols: 1\n      dt: i\n      data: [ {labels} ]\n   labelsInfo: []\n",
            matrix("0.5, 0.25, 0.25, 0."),
            matrix(second)
        )
    }

    /// The attack: NaN or infinite histograms loaded and made every
    /// distance NaN. Now the template is named and refused.
    #[test]
    fn nan_infinite_and_negative_histograms_are_refused() {
        let ok = load_text(&tiny_model("0.25, 0.25, 0.25, 0.25", "1, 2")).unwrap();
        assert_eq!(ok.gallery().len(), 2);
        for (data, expect) in [
            (
                ".nan, .nan, .nan, .nan",
                "template 1: its histogram holds NaN (value 0)",
            ),
            (
                "0.5, .Inf, 0.25, 0.25",
                "template 1: its histogram holds inf (value 1)",
            ),
            ("0.5, 0.25, -.inf, 0.25", "holds -inf (value 2)"),
            ("0.5, 0.5, 0.25, -0.25", "holds -0.25 (value 3)"),
            ("nan, 0.5, 0.25, 0.25", "holds NaN (value 0)"),
            ("0., 0., 0., 0.", "template 1: its histogram is all zeros"),
        ] {
            let err = load_text(&tiny_model(data, "1, 2"))
                .err()
                .unwrap_or_default();
            assert!(
                err.contains(expect),
                "{data}: {err:?} should say {expect:?}"
            );
        }
        for labels in ["1, .nan", "1, 2.5", "1, 1e12"] {
            let err = load_text(&tiny_model("0.25, 0.25, 0.25, 0.25", labels)).unwrap_err();
            assert!(
                err.contains("label 1 is") && err.contains("not a whole number"),
                "{err}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_read_as_models() {
        let err = Lbph::load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(
            err.contains("character device, not a regular file"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("m.yml");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let err = Lbph::load(&fifo).unwrap_err().to_string();
        assert!(err.contains("named pipe"), "{err}");
        let err = Lbph::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("a folder"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn saving_is_private_and_removes_a_killed_writers_leftovers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plant.yml");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let leftover = dir.path().join(format!(".plant.yml.kv-tmp-{dead}-7"));
        std::fs::write(&leftover, "%YAML:1.0\n---\nopencv_lbphfaces:\n   thre").unwrap();
        model().save(&path).unwrap();
        assert!(
            !leftover.exists(),
            "the killed writer's temporary file is gone"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["plant.yml"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}

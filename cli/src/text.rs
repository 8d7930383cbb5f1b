//! Names and paths in plain-text output, escaped.
//!
//! People's names and file names come from outside: a folder name, a
//! model's `labelsInfo`, a path on the command line. One that holds a
//! newline would forge lines in the output of `identify` that a script or
//! an operator takes for the tool's own ("s1.pgm: Alice (…, accepted)");
//! a carriage return, an ANSI escape or a bidi override can do the same to
//! what a terminal shows. [`shown`] writes every control character, the
//! invisible format characters and the backslash as escapes (`\n`, `\u{202e}`,
//! `\\`) and leaves everything else as it is, so that ordinary names
//! (`Müller, "Hans"`, `O'Brien`) print unchanged and each record stays on
//! one line. JSON output needs none of this: serde escapes strings itself.

use std::fmt::Write;
use std::path::Path;

/// `s` with control and invisible format characters escaped (see the module docs).
pub fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible_format(c) => {
                let _ = write!(out, "{}", c.escape_unicode());
            }
            c => out.push(c),
        }
    }
    out
}

/// A path for plain-text output, escaped as [`shown`] does.
pub fn path(p: &Path) -> String {
    shown(&p.to_string_lossy())
}

/// Zero-width characters, line and paragraph separators, and the bidi
/// embeddings, overrides and isolates (Unicode's `Cf` that reorder or hide text).
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_tricks_are_escaped_ordinary_names_are_not() {
        assert_eq!(
            shown("Eve\ns1.pgm: Alice (distance 1.00, accepted)"),
            "Eve\\ns1.pgm: Alice (distance 1.00, accepted)"
        );
        assert_eq!(shown("a\rb\tc\x1b[2Jd"), "a\\rb\\tc\\u{1b}[2Jd");
        assert_eq!(
            shown("x\u{202E}gpj.exe\u{200B}"),
            "x\\u{202e}gpj.exe\\u{200b}"
        );
        assert_eq!(shown("back\\slash"), "back\\\\slash");
        for name in ["Müller, \"Hans\"", "O'Brien", "李小龍", "s12"] {
            assert_eq!(shown(name), name);
        }
        assert!(!shown("a\u{85}b\u{2028}c")
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}'));
    }
}

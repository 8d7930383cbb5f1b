//! The one rule for operator ids (personnel numbers) and display names,
//! shared by the offload service (every id and name it receives) and the
//! kiosk (every id and name it stores, and every one it takes from the
//! plant gallery): what one accepts, the other accepts, so an operator
//! created at a kiosk never fails to reach the plant gallery for a
//! character the kiosk let through.

use unicode_general_category::{get_general_category, GeneralCategory as G};
use unicode_normalization::UnicodeNormalization;
use unicode_script::{Script as S, UnicodeScript};

/// Longest operator id or display name, in bytes.
pub const MAX_TEXT_BYTES: usize = 128;

/// What a piece of text is: ids are held to stricter rules than names,
/// since one id that looks like another is a way to impersonate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Id,
    Name,
}

/// Why a text is refused. Each message begins with the field's name (as
/// given to [`check_text`]) and is what the service answers with
/// (INVALID_ARGUMENT).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{field} is empty")]
    Empty { field: String },
    /// Longer than [`MAX_TEXT_BYTES`] as sent, or once in NFC.
    #[error("{field} is {len} bytes long; at most {MAX_TEXT_BYTES} are allowed")]
    TooLong { field: String, len: usize },
    #[error("{field} contains control characters")]
    Control { field: String },
    #[error("{field} is only whitespace")]
    OnlyWhitespace { field: String },
    #[error("{field} begins or ends with whitespace; send it without")]
    SurroundingWhitespace { field: String },
    #[error("{field} contains the whitespace character {}; only plain spaces (U+0020) are allowed", code_point(*.c))]
    Whitespace { field: String, c: char },
    #[error("{field} contains two spaces in a row")]
    DoubleSpace { field: String },
    /// An invisible, bidirectional or private-use character; `what` says which.
    #[error("{field} contains {what} {}, which would make it look like another", code_point(*.c))]
    Invisible {
        field: String,
        what: &'static str,
        c: char,
    },
    /// Ids only: a character NFKC would change; `plain` is its plain form.
    #[error("{field} contains the compatibility character {} (a variant of {plain:?}); use the plain form", code_point(*.c))]
    Compatibility {
        field: String,
        c: char,
        plain: String,
    },
    /// Ids only: the id's confusable skeleton (Unicode TS #39) is that of
    /// another id already held ([`check_distinct`]).
    #[error("{field} {id:?} could pass for the existing {existing:?} (the same confusable skeleton, Unicode TS #39); choose another")]
    LooksLike {
        field: String,
        id: String,
        existing: String,
    },
    /// Ids only: letters of more than one script (full Unicode names).
    #[error("{field} mixes the scripts {}, so it could pass for another id; use one script", .scripts.join(", "))]
    MixedScripts {
        field: String,
        scripts: Vec<&'static str>,
    },
}

impl TextError {
    /// The field at fault, as given to [`check_text`].
    pub fn field(&self) -> &str {
        use TextError as E;
        match self {
            E::Empty { field }
            | E::TooLong { field, .. }
            | E::Control { field }
            | E::OnlyWhitespace { field }
            | E::SurroundingWhitespace { field }
            | E::Whitespace { field, .. }
            | E::DoubleSpace { field }
            | E::Invisible { field, .. }
            | E::Compatibility { field, .. }
            | E::LooksLike { field, .. }
            | E::MixedScripts { field, .. } => field,
        }
    }
}

/// The one check for operator ids and display names. Refused, with the
/// reason named: empty, more than MAX_TEXT_BYTES bytes (before and after
/// normalisation), control characters, whitespace at either end or other
/// than single plain spaces inside, zero-width characters, bidirectional
/// controls and any other format character (Unicode category Cf; names may
/// keep the joiners U+200C/U+200D that some scripts need). Ids, besides:
/// private-use or unassigned code points, compatibility forms (fullwidth
/// letters, ligatures: whatever NFKC would change) and letters of more
/// than one script (UTS #39's "highly restrictive" level: one script, or
/// Latin with Han and Japanese kana, with Han and Bopomofo, or with Han
/// and Hangul). Nothing is trimmed silently; what is accepted comes back
/// in Unicode NFC, the form stored and compared.
pub fn check_text(field: &str, value: &str, kind: TextKind) -> Result<String, TextError> {
    let field = || field.to_owned();
    if value.is_empty() {
        return Err(TextError::Empty { field: field() });
    }
    let too_long = |len: usize| TextError::TooLong {
        field: field(),
        len,
    };
    if value.len() > MAX_TEXT_BYTES {
        return Err(too_long(value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err(TextError::Control { field: field() });
    }
    if value.chars().all(char::is_whitespace) {
        return Err(TextError::OnlyWhitespace { field: field() });
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err(TextError::SurroundingWhitespace { field: field() });
    }
    if let Some(c) = value.chars().find(|&c| c.is_whitespace() && c != ' ') {
        return Err(TextError::Whitespace { field: field(), c });
    }
    if value.contains("  ") {
        return Err(TextError::DoubleSpace { field: field() });
    }
    for c in value.chars() {
        let joiner = matches!(c, '\u{200C}' | '\u{200D}');
        let what = match c {
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'
                if !(joiner && kind == TextKind::Name) =>
            {
                "the invisible (zero-width) character"
            }
            '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{061C}' => "the bidirectional control",
            _ if joiner && kind == TextKind::Name => continue,
            _ => match get_general_category(c) {
                G::Format => "the invisible format character",
                G::PrivateUse | G::Unassigned | G::Surrogate if kind == TextKind::Id => {
                    "the private-use or unassigned code point"
                }
                _ => continue,
            },
        };
        return Err(TextError::Invisible {
            field: field(),
            what,
            c,
        });
    }
    let nfc: String = value.nfc().collect();
    if nfc.len() > MAX_TEXT_BYTES {
        return Err(too_long(nfc.len()));
    }
    if kind == TextKind::Id {
        if let Some(c) = nfc.chars().find(|&c| {
            let mut buf = [0u8; 4];
            let one: &str = c.encode_utf8(&mut buf);
            !one.nfkc().eq(one.chars())
        }) {
            let plain: String = c.to_string().nfkc().collect();
            return Err(TextError::Compatibility {
                field: field(),
                c,
                plain,
            });
        }
        check_single_script(&nfc).map_err(|scripts| TextError::MixedScripts {
            field: field(),
            scripts,
        })?;
    }
    Ok(nfc)
}

/// UTS #39's "highly restrictive" level: the letters of an id come from
/// one script, or from Latin with Han and the Japanese kana, with Han and
/// Bopomofo, or with Han and Hangul. Digits and punctuation (script Common)
/// and combining marks (Inherited) go with anything. Refused: the scripts
/// found, in order of appearance.
fn check_single_script(value: &str) -> Result<(), Vec<&'static str>> {
    let mut scripts: Vec<S> = Vec::new();
    for c in value.chars() {
        let script = c.script();
        if !matches!(script, S::Common | S::Inherited) && !scripts.contains(&script) {
            scripts.push(script);
        }
    }
    const ALLOWED: [&[S]; 3] = [
        &[S::Latin, S::Han, S::Hiragana, S::Katakana],
        &[S::Latin, S::Han, S::Bopomofo],
        &[S::Latin, S::Han, S::Hangul],
    ];
    if scripts.len() <= 1
        || ALLOWED
            .iter()
            .any(|set| scripts.iter().all(|s| set.contains(s)))
    {
        return Ok(());
    }
    Err(scripts.iter().map(|s| s.full_name()).collect())
}

/// `U+200B` for messages.
fn code_point(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// An id's confusable skeleton (Unicode TS #39, `skeleton(X)`): two ids
/// with the same skeleton look alike (Cyrillic `Р-1042` and Latin
/// `P-1042`, `l` and `1`).
pub fn skeleton(id: &str) -> String {
    unicode_security::skeleton(id).collect()
}

/// The second half of the rule for ids, for whoever holds the other ids
/// (the service's gallery, the kiosk's store): `id` (as [`check_text`]
/// returned it) is refused when its [`skeleton`] equals that of an id in
/// `existing` other than itself.
pub fn check_distinct<'a>(
    field: &str,
    id: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Result<(), TextError> {
    let mine = skeleton(id);
    match existing
        .into_iter()
        .find(|other| *other != id && skeleton(other) == mine)
    {
        Some(other) => Err(TextError::LooksLike {
            field: field.to_owned(),
            id: id.to_owned(),
            existing: other.to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_operator_id(id: &str) -> Result<String, TextError> {
        check_text("operator_id", id, TextKind::Id)
    }

    #[test]
    fn operator_ids_are_checked() {
        assert!(check_operator_id("4711").is_ok());
        assert!(check_operator_id("Müller-07").is_ok());
        assert!(check_operator_id("").is_err());
        assert!(check_operator_id("a\nb").is_err());
        assert!(check_operator_id(&"x".repeat(129)).is_err());
    }

    /// Each confusable id is refused with its reason named.
    #[test]
    fn confusable_ids_are_refused_with_the_reason() {
        let cases = [
            (" ", "only whitespace"),
            ("\u{3000}", "only whitespace"),
            (" 4711", "begins or ends with whitespace"),
            ("4711 ", "begins or ends with whitespace"),
            ("47\u{00A0}11", "U+00A0"),
            ("47  11", "two spaces"),
            ("47\u{200B}11", "invisible (zero-width) character U+200B"),
            ("47\u{200C}11", "U+200C"),
            ("47\u{200D}11", "U+200D"),
            ("47\u{2060}11", "U+2060"),
            ("\u{FEFF}4711", "U+FEFF"),
            ("\u{202E}1174", "bidirectional control U+202E"),
            ("47\u{2066}11\u{2069}", "bidirectional control U+2066"),
            ("47\u{200F}11", "bidirectional control U+200F"),
            ("47\u{00AD}11", "format character U+00AD"),
            ("47\u{E000}11", "private-use or unassigned"),
            ("\u{FF4F}rl-01", "compatibility character U+FF4F"),
            ("\u{FB01}sher", "compatibility character U+FB01"),
            ("p\u{0430}ypal", "mixes the scripts Latin, Cyrillic"),
            ("orl-\u{03BF}1", "mixes the scripts Latin, Greek"),
        ];
        for (id, reason) in cases {
            let err = check_operator_id(id).expect_err(id);
            assert_eq!(err.field(), "operator_id", "{id:?}: {err}");
            let err = err.to_string();
            assert!(err.contains(reason), "{id:?}: {err}");
            assert!(err.starts_with("operator_id"), "{id:?}: {err}");
        }
    }

    /// The messages are the service's answers, word for word.
    #[test]
    fn messages_are_the_services() {
        let cases = [
            ("", "operator_id is empty"),
            (
                "47\u{00A0}11",
                "operator_id contains the whitespace character U+00A0; only plain spaces (U+0020) are allowed",
            ),
            (
                "47\u{200B}11",
                "operator_id contains the invisible (zero-width) character U+200B, which would make it look like another",
            ),
            (
                "\u{FB01}sher",
                "operator_id contains the compatibility character U+FB01 (a variant of \"fi\"); use the plain form",
            ),
            (
                "p\u{0430}ypal",
                "operator_id mixes the scripts Latin, Cyrillic, so it could pass for another id; use one script",
            ),
        ];
        for (id, message) in cases {
            assert_eq!(check_operator_id(id).unwrap_err().to_string(), message);
        }
        assert_eq!(
            check_operator_id(&"x".repeat(129)).unwrap_err().to_string(),
            "operator_id is 129 bytes long; at most 128 are allowed"
        );
    }

    #[test]
    fn ids_come_back_in_nfc_and_legitimate_scripts_pass() {
        // "Müller" with a combining diaeresis is the same id as with "ü".
        assert_eq!(
            check_operator_id("Mu\u{0308}ller").unwrap(),
            "M\u{00FC}ller"
        );
        assert_eq!(check_operator_id("M\u{00FC}ller").unwrap(), "M\u{00FC}ller");
        for id in [
            "Anna Weber",
            "Łukasz-3",
            "Иван-07",
            "山田太郎",
            "やまだ-タロウ",
            "Kim 김민준",
            "王小明 A7",
            "Δημήτρης",
        ] {
            assert_eq!(check_operator_id(id).unwrap(), id, "{id}");
        }
    }

    #[test]
    fn names_may_keep_joiners_but_not_bidi_controls() {
        // Persian names need the zero-width non-joiner.
        assert!(check_text("name", "\u{0645}\u{06CC}\u{200C}\u{0631}", TextKind::Name).is_ok());
        assert!(check_text("name", "Ada \u{202E}rebeW", TextKind::Name).is_err());
        assert!(check_text("name", "Ada\u{200B}", TextKind::Name).is_err());
        assert!(check_text("name", " Ada", TextKind::Name).is_err());
        // Names are not held to one script.
        assert!(check_text("name", "Ada (Ада)", TextKind::Name).is_ok());
    }

    /// Finding 12 of issue 22: a Cyrillic `Р-1042` was accepted beside a
    /// Latin `P-1042` (each is of one script, so the mixed-script rule
    /// lets both through).
    #[test]
    fn an_id_that_looks_like_a_held_one_is_refused() {
        let cyrillic = check_operator_id("\u{0420}-1042").unwrap();
        let held = ["P-1042", "A-7"];
        let err = check_distinct("operator_id", &cyrillic, held).unwrap_err();
        assert_eq!(err.field(), "operator_id");
        assert_eq!(
            err.to_string(),
            "operator_id \"\u{0420}-1042\" could pass for the existing \"P-1042\" (the same confusable skeleton, Unicode TS #39); choose another"
        );
        // Digits and letters that look alike, too.
        assert!(check_distinct("operator_id", "P-l042", held).is_err());
        // The id itself, and ids that merely differ, are not in the way.
        assert!(check_distinct("operator_id", "P-1042", held).is_ok());
        assert!(check_distinct("operator_id", "P-1043", held).is_ok());
        assert!(check_distinct("operator_id", "p-1042", held).is_ok());
        assert_eq!(skeleton("\u{0420}-1042"), skeleton("P-1042"));
    }
}

//! Kiosk settings, kept in the store one key per field (JSON values), so
//! that the audit log names which setting changed. Here, not in the kiosk,
//! so that `kubevision doctor` checks the configuration the kiosk uses.

mod line;
mod policy;

use serde::{Deserialize, Serialize};
use vision::recogniser::Kind;

pub use line::{AccessLevels, LineSettings, LineSettingsError, SignOutAccount};
pub use policy::{AuthPolicy, RolePolicy};

use crate::{Millis, Store, StoreError};

/// The kiosk's language (its texts are in the kiosk's `i18n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    De,
}

impl Language {
    pub fn toggled(self) -> Language {
        match self {
            Language::En => Language::De,
            Language::De => Language::En,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Local,
    Offload,
    /// Offload under a short deadline, local when it does not answer
    /// (stored as "auto" before 0.2; still read).
    #[serde(rename = "offload-with-fallback", alias = "auto")]
    OffloadWithFallback,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub language: Language,
    /// A camera index ("0"), a folder of images or a video file; `--camera` overrides it.
    pub camera: String,
    /// Requested capture size for USB cameras.
    pub resolution: (u32, u32),
    pub backend: BackendChoice,
    pub offload_endpoint: String,
    pub tls_ca: String,
    pub tls_cert: String,
    pub tls_key: String,
    /// Which recogniser matches faces: `lbph` (the default) or `dlib`
    /// (dlib's embeddings; needs the model files). Enrolment makes
    /// templates of every kind the kiosk can, so switching needs no
    /// re-enrolment.
    #[serde(with = "kind_name")]
    pub recogniser: Kind,
    /// lbph's accept threshold (chi-square distance), from calibration.
    pub threshold: f64,
    /// dlib's accept threshold (L2 distance between embeddings).
    pub dlib_threshold: f64,
    /// Ask for a head turn, left or right at random, after the motion
    /// check; needs dlib's landmark model (without it the motion check
    /// decides alone).
    pub head_turn_challenge: bool,
    /// Frames an enrollment collects.
    pub enroll_frames: usize,
    pub policy: AuthPolicy,
    /// Pure black, white and yellow with thicker strokes (theme::HIGH_CONTRAST);
    /// absent in settings stored before it existed, hence off by default.
    pub high_contrast: bool,
    /// What the kiosk tells the production line over OPC UA.
    pub line: LineSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            language: Language::En,
            camera: "0".into(),
            resolution: (640, 480),
            backend: BackendChoice::Local,
            offload_endpoint: String::new(),
            tls_ca: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            recogniser: Kind::Lbph,
            threshold: Kind::Lbph.default_threshold(),
            dlib_threshold: Kind::Dlib.default_threshold(),
            head_turn_challenge: true,
            enroll_frames: 50,
            policy: AuthPolicy::default(),
            high_contrast: false,
            line: LineSettings::default(),
        }
    }
}

/// A recogniser kind as its name (`"lbph"`, `"dlib"`), as the proto and
/// the command line spell it.
mod kind_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use vision::recogniser::Kind;

    pub fn serialize<S: Serializer>(kind: &Kind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {path}: {source}")]
    TlsFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("setting {key}: {source}")]
    Json {
        key: String,
        source: serde_json::Error,
    },
}

fn fields(s: &Settings) -> Result<serde_json::Map<String, serde_json::Value>, SettingsError> {
    match serde_json::to_value(s) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(other) => Err(SettingsError::Json {
            key: "*".into(),
            source: serde::de::Error::custom(format!("not an object: {other}")),
        }),
        Err(source) => Err(SettingsError::Json {
            key: "*".into(),
            source,
        }),
    }
}

/// What the link to the offload service depends on: the backend, the
/// endpoint and the three TLS files ([`Settings::offload_key`]).
pub type OffloadKey = (BackendChoice, [String; 4]);

impl Settings {
    /// The accept threshold of recogniser `kind`.
    pub fn threshold_of(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Lbph => self.threshold,
            Kind::Dlib => self.dlib_threshold,
        }
    }

    /// The settings [`offload_client`](Self::offload_client) reads: what
    /// runs on that link (the recogniser, the plant sync) restarts when
    /// this changes, and only then.
    pub fn offload_key(&self) -> OffloadKey {
        (
            self.backend,
            [
                self.offload_endpoint.clone(),
                self.tls_ca.clone(),
                self.tls_cert.clone(),
                self.tls_key.clone(),
            ],
        )
    }

    /// How to reach the offload service these settings name, with the TLS
    /// files read now; `None` when recognition is local (no service to
    /// call or to sync with). The one reading of these settings, for the
    /// recogniser, the plant sync and `kubevision doctor`.
    pub fn offload_client(
        &self,
    ) -> Result<Option<kubevision_offload_client::ClientConfig>, SettingsError> {
        use kubevision_offload_client::{ClientConfig, TlsSettings};
        if self.backend == BackendChoice::Local {
            return Ok(None);
        }
        let mut config = ClientConfig::new(self.offload_endpoint.trim());
        let read = |path: &str| {
            std::fs::read(path).map_err(|source| SettingsError::TlsFile {
                path: path.into(),
                source,
            })
        };
        if !self.tls_ca.trim().is_empty() {
            let client_identity_pem = match (self.tls_cert.trim(), self.tls_key.trim()) {
                ("", _) | (_, "") => None,
                (cert, key) => Some((read(cert)?, read(key)?)),
            };
            config.tls = Some(TlsSettings {
                ca_pem: read(self.tls_ca.trim())?,
                client_identity_pem,
                domain: None,
            });
        }
        Ok(Some(config))
    }

    /// Stored values over the defaults; a stored value that no longer
    /// parses (an older version's, a hand edit) keeps its default.
    pub fn load(store: &Store) -> Result<Settings, SettingsError> {
        Settings::from_stored(|key| store.setting(key))
    }

    /// As [`load`](Self::load), from a store file opened read-only and
    /// left as it is (no migration): for `kubevision doctor`, which checks
    /// the configuration the kiosk uses.
    pub fn read_only(db: &std::path::Path) -> Result<Settings, SettingsError> {
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::from)?;
        Settings::from_stored(|key| {
            use rusqlite::OptionalExtension;
            Ok(conn
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?)
        })
    }

    fn from_stored(
        stored: impl Fn(&str) -> Result<Option<String>, StoreError>,
    ) -> Result<Settings, SettingsError> {
        let defaults = fields(&Settings::default())?;
        let mut map = defaults.clone();
        for key in defaults.keys() {
            let Some(text) = stored(key)? else {
                continue;
            };
            let mut candidate = map.clone();
            let usable = serde_json::from_str(&text).ok().and_then(|v| {
                candidate.insert(key.clone(), v);
                serde_json::from_value::<Settings>(serde_json::Value::Object(candidate.clone()))
                    .ok()
            });
            match usable {
                Some(_) => map = candidate,
                None => tracing::warn!("ignoring stored setting {key}: {text}"),
            }
        }
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|source| {
            SettingsError::Json {
                key: "*".into(),
                source,
            }
        })
    }

    /// Writes the fields that differ from what is stored, each audited.
    pub fn save(
        &self,
        store: &mut Store,
        actor: Option<&str>,
        now: Millis,
    ) -> Result<(), SettingsError> {
        for (key, value) in fields(self)? {
            let text = value.to_string();
            if store.setting(&key)?.as_deref() != Some(text.as_str()) {
                store.put_setting(&key, &text, actor, now)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditAction, AuditFilter};

    #[test]
    fn roundtrip_and_only_changes_are_logged() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_in_dir(dir.path()).unwrap();
        assert_eq!(Settings::load(&store).unwrap(), Settings::default());
        let mut s = Settings::default();
        s.save(&mut store, Some("A-1"), 1).unwrap();
        let logged = |store: &Store| {
            store
                .audit(&AuditFilter {
                    action: Some(AuditAction::SettingsChanged),
                    ..Default::default()
                })
                .unwrap()
        };
        let first = logged(&store).len();
        s.language = Language::De;
        s.policy.auto_sign_out_ms = 60_000;
        s.save(&mut store, Some("A-1"), 2).unwrap();
        let details: Vec<String> = logged(&store)
            .iter()
            .take(2)
            .map(|r| r.detail.clone())
            .collect();
        assert_eq!(logged(&store).len(), first + 2);
        assert!(
            details.contains(&"language".to_string()) && details.contains(&"policy".to_string())
        );
        assert_eq!(Settings::load(&store).unwrap(), s);
    }

    #[test]
    fn the_recogniser_is_stored_by_name_and_an_unknown_one_keeps_lbph() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_in_dir(dir.path()).unwrap();
        let s = Settings {
            recogniser: Kind::Dlib,
            head_turn_challenge: false,
            ..Settings::default()
        };
        s.save(&mut store, Some("A-1"), 1).unwrap();
        assert_eq!(
            store.setting("recogniser").unwrap().as_deref(),
            Some("\"dlib\"")
        );
        let loaded = Settings::load(&store).unwrap();
        assert_eq!(loaded, s);
        assert_eq!(loaded.threshold_of(Kind::Dlib), 0.48);
        assert_eq!(
            loaded.threshold_of(Kind::Lbph),
            Kind::Lbph.default_threshold()
        );
        let changed = store
            .audit(&AuditFilter {
                action: Some(AuditAction::SettingsChanged),
                ..Default::default()
            })
            .unwrap();
        assert!(changed.iter().any(|r| r.detail == "recogniser"));
        assert!(changed.iter().any(|r| r.detail == "head_turn_challenge"));
        store
            .put_setting("recogniser", "\"resnet\"", None, 2)
            .unwrap();
        let loaded = Settings::load(&store).unwrap();
        assert_eq!(
            (loaded.recogniser, loaded.head_turn_challenge),
            (Kind::Lbph, false)
        );
    }

    #[test]
    fn an_unreadable_stored_value_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_in_dir(dir.path()).unwrap();
        store
            .put_setting("language", "\"klingon\"", None, 1)
            .unwrap();
        store.put_setting("threshold", "not json", None, 1).unwrap();
        store.put_setting("enroll_frames", "20", None, 1).unwrap();
        let loaded = Settings::load(&store).unwrap();
        assert_eq!(
            loaded,
            Settings {
                enroll_frames: 20,
                ..Settings::default()
            },
            "good fields survive bad ones"
        );
    }
}

//! Kiosk settings, kept in the store one key per field (JSON values), so
//! that the audit log names which setting changed. Here, not in the kiosk,
//! so that `kubevision doctor` checks the configuration the kiosk uses.
//!
//! Every row is keyed like the audit log: an HMAC of its key and value
//! under the audit key, which lives outside the database ([`mac`]). The
//! settings decide security (the head-turn check, the accept thresholds,
//! the OPC UA link), so a row changed by SQL without the key (issue 22,
//! finding 8) is refused on read: [`Settings::load`] keeps that field's
//! default, which is the secure one, and logs a warning naming the field;
//! `Store::setting` answers [`StoreError::SettingNotKeyed`]. Every change
//! through the kiosk is audited (`settings_changed`, naming the field).

mod line;
mod policy;

use serde::{Deserialize, Serialize};
use vision::recogniser::Kind;

pub use line::{AccessLevels, LineSettings, LineSettingsError, SignOutAccount};
pub use policy::{AuthPolicy, RolePolicy};

use crate::keys::{hmac, mac_eq, Secrets};
use crate::{Millis, Store, StoreError};

/// A setting row's key: HMAC-SHA-256 of its key and value under the audit
/// key (a purpose prefix keeps it apart from the audit chain's MACs).
pub(crate) fn mac(secrets: &Secrets, key: &str, value: &str) -> [u8; 32] {
    hmac(
        secrets.audit_key().bytes(),
        &[
            b"kubevision setting: ",
            key.as_bytes(),
            &[0],
            value.as_bytes(),
        ],
    )
}

/// A setting's value, if its row carries the right key.
pub(crate) fn read_keyed(
    conn: &rusqlite::Connection,
    secrets: &Secrets,
    key: &str,
) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    let row: Option<(String, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT value, mac FROM settings WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        None => Ok(None),
        Some((value, Some(stored))) if mac_eq(&stored, &mac(secrets, key, &value)) => {
            Ok(Some(value))
        }
        Some(_) => Err(StoreError::SettingNotKeyed {
            key: key.to_owned(),
        }),
    }
}

/// Keys the rows stored before settings were keyed, once: by the start
/// that migrates the store to the keyed schema; audited with their names.
pub(crate) fn key_stored(
    conn: &mut rusqlite::Connection,
    secrets: &Secrets,
) -> Result<(), StoreError> {
    let rows: Vec<(String, String)> = {
        let mut stmt =
            conn.prepare("SELECT key, value FROM settings WHERE mac IS NULL ORDER BY key")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    if rows.is_empty() {
        return Ok(());
    }
    let tx = crate::write_transaction(conn, secrets)?;
    for (key, value) in &rows {
        tx.execute(
            "UPDATE settings SET mac = ?1 WHERE key = ?2",
            rusqlite::params![mac(secrets, key, value).as_slice(), key],
        )?;
    }
    let names: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    crate::audit::append(
        &tx,
        &crate::AuditEvent::new(crate::AuditAction::SettingsChanged).detail(format!(
            "keyed the settings stored before: {}",
            names.join(", ")
        )),
        crate::now_millis(),
    )?;
    tx.commit()?;
    Ok(())
}

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
    /// parses (an older version's) or that the kiosk did not write (no
    /// key: see the module) keeps its default, with a warning.
    pub fn load(store: &Store) -> Result<Settings, SettingsError> {
        Settings::from_stored(|key| store.setting(key))
    }

    /// As [`load`](Self::load), from a store file opened read-only and
    /// left as it is (no migration), its rows checked with the secrets
    /// folder beside it: for `kubevision doctor`, which checks the
    /// configuration the kiosk uses.
    pub fn read_only(db: &std::path::Path) -> Result<Settings, SettingsError> {
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::from)?;
        let dir = db.parent().unwrap_or(std::path::Path::new("."));
        let secrets = Secrets::load(&Secrets::default_dir(dir))?;
        Settings::from_stored(|key| read_keyed(&conn, &secrets, key))
    }

    fn from_stored(
        stored: impl Fn(&str) -> Result<Option<String>, StoreError>,
    ) -> Result<Settings, SettingsError> {
        let defaults = fields(&Settings::default())?;
        let mut map = defaults.clone();
        for key in defaults.keys() {
            let text = match stored(key) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                // The default is the secure value: the head-turn check on,
                // the calibrated thresholds, the OPC UA link as shipped.
                Err(refused @ StoreError::SettingNotKeyed { .. }) => {
                    tracing::warn!("{refused}; using its default");
                    continue;
                }
                Err(e) => return Err(e.into()),
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

    /// Issue 22, finding 8: the settings were plain rows; switching the
    /// head-turn check off or loosening a threshold took one UPDATE.
    #[test]
    fn a_setting_changed_by_sql_is_refused_and_its_secure_default_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_in_dir(dir.path()).unwrap();
        let mine = Settings {
            enroll_frames: 20,
            threshold: 60.0,
            ..Settings::default()
        };
        mine.save(&mut store, Some("A-1"), 1).unwrap();
        assert_eq!(Settings::load(&store).unwrap(), mine);
        drop(store);
        // Edit the SQLite file directly, as someone with write access
        // to it but without the secrets folder would.
        let conn = rusqlite::Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
        conn.execute(
            "UPDATE settings SET value = 'false' WHERE key = 'head_turn_challenge'",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE settings SET value = '1000.0', mac = NULL WHERE key = 'threshold'",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE settings SET value = '9.0', mac = zeroblob(32) WHERE key = 'dlib_threshold'",
            [],
        )
        .unwrap();
        drop(conn);
        let store = Store::open_in_dir(dir.path()).unwrap();
        let err = store.setting("head_turn_challenge").unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting head_turn_challenge was changed without the kiosk's key (by SQL behind the kiosk's back, or by a copy of the database from another kiosk): refused"
        );
        assert!(store.setting("threshold").is_err());
        assert!(store.setting("dlib_threshold").is_err());
        let loaded = Settings::load(&store).unwrap();
        assert!(loaded.head_turn_challenge, "the secure default");
        assert_eq!(loaded.threshold, Settings::default().threshold);
        assert_eq!(loaded.dlib_threshold, Settings::default().dlib_threshold);
        assert_eq!(loaded.enroll_frames, 20, "the untouched rows still count");
        // `kubevision doctor` reads the same.
        let doctor = Settings::read_only(&dir.path().join(crate::DB_FILE)).unwrap();
        assert_eq!(doctor, loaded);
    }

    /// Rows stored before the settings were keyed are keyed by the start
    /// that migrates the store, and that is audited.
    #[test]
    fn settings_from_before_the_key_are_keyed_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_in_dir(dir.path()).unwrap();
        store.put_setting("enroll_frames", "30", None, 1).unwrap();
        drop(store);
        let conn = rusqlite::Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
        // The schema as it was before: no key column.
        conn.execute_batch("ALTER TABLE settings DROP COLUMN mac")
            .unwrap();
        conn.pragma_update(None, "user_version", 5).unwrap();
        drop(conn);
        let store = Store::open_in_dir(dir.path()).unwrap();
        assert_eq!(
            store.setting("enroll_frames").unwrap().as_deref(),
            Some("30")
        );
        let keyed = store
            .audit(&AuditFilter {
                action: Some(AuditAction::SettingsChanged),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            keyed[0].detail,
            "keyed the settings stored before: enroll_frames"
        );
        assert!(matches!(
            store.verify_chain().unwrap(),
            crate::ChainStatus::Intact { .. }
        ));
        // A later start does not key anything again.
        drop(store);
        let store = Store::open_in_dir(dir.path()).unwrap();
        let again = store
            .audit(&AuditFilter {
                action: Some(AuditAction::SettingsChanged),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(again.len(), keyed.len());
    }
}

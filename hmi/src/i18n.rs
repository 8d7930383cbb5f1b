//! German and English texts. Every text is an enum variant with both
//! translations in one match arm, so a missing translation does not compile.

use vision::liveness::{Turn, Verdict};
use vision::quality::QualityIssue;

use crate::auth::Notice;
use crate::store::Role;

pub use crate::settings::Language;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T {
    AppTitle,
    SetupTitle,
    SetupIntro,
    Name,
    PersonnelNo,
    Password,
    PasswordRepeat,
    Pin,
    PinRepeat,
    Role,
    Create,
    Cancel,
    Back,
    Ok,
    Delete,
    Save,
    SignInTitle,
    LookAtCamera,
    UsePersonnelNo,
    EnterPin,
    LookAtCameraToConfirm,
    SignOut,
    Welcome,
    Administration,
    Operators,
    AuditLog,
    Settings,
    Enroll,
    ReEnroll,
    NewOperator,
    EnrollTitle,
    EnrollStart,
    Captured,
    Skipped,
    Verifying,
    EnrollDone,
    EnrollVerifyFailed,
    Enrolled,
    NotEnrolled,
    ConfirmDelete,
    Filter,
    ExportCsv,
    Exported,
    ChainIntact,
    ChainBroken,
    Language,
    Camera,
    Backend,
    Recogniser,
    HeadTurnChallenge,
    AskHeadTurn,
    ChallengeMotionOnly,
    DlibUnavailable,
    CheckingModels,
    OffloadEndpoint,
    TlsFiles,
    Threshold,
    AutoSignOutMinutes,
    CameraLost,
    CameraRestarted,
    RecognitionRestarted,
    PlantUnreachable,
    CameraStarting,
    SecretsMismatch,
    PinRule,
    PasswordRule,
    Working,
    NotRecognised,
    HighContrast,
    Display,
    FaceInOval,
    PinHint,
    Shift,
    Space,
    ExitKiosk,
    Backspace,
    Cluster,
    Kubeconfig,
    RancherUrl,
    ApiToken,
    ClusterName,
    Connect,
    Refresh,
    DeployUpgrade,
    Gpu,
    Remove,
    ConfirmRemove,
    AlsoDeleteGallery,
    Node,
    Hardware,
    Gpus,
    NodeReady,
    NodeNotReady,
    NotDeployed,
    Removed,
    UseAsOffloadEndpoint,
    EndpointSaved,
    KioskName,
    RegisterKiosk,
    KioskRegistered,
    Line,
    LineUnreachable,
    LineServe,
    LineListen,
    LineId,
    AccessLevel,
    AnonymousRead,
    AllowSecurityNone,
    LineStarting,
    LineOff,
    SignOutAccount,
    SignOutUser,
    SignOutPassword,
    SetAccount,
    AccountSet,
    RejectedCertificates,
    NoRejectedCertificates,
    Trust,
    Saved,
    ListenFixed,
    ValidUntil,
}

impl T {
    pub fn text(self, lang: Language) -> &'static str {
        use Language::{De, En};
        let (en, de) = match self {
            T::AppTitle => ("KubeVision sign-in", "KubeVision Anmeldung"),
            T::SetupTitle => ("First start: create the administrator", "Erster Start: Administrator anlegen"),
            T::SetupIntro => (
                "Nobody can use this kiosk yet. Create the first administrator; their face is enrolled next.",
                "Noch kann niemand dieses Terminal benutzen. Legen Sie den ersten Administrator an; danach wird sein Gesicht erfasst.",
            ),
            T::Name => ("Name", "Name"),
            T::PersonnelNo => ("Personnel number", "Personalnummer"),
            T::Password => ("Password", "Passwort"),
            T::PasswordRepeat => ("Repeat password", "Passwort wiederholen"),
            T::Pin => ("PIN", "PIN"),
            T::PinRepeat => ("Repeat PIN", "PIN wiederholen"),
            T::Role => ("Role", "Rolle"),
            T::Create => ("Create", "Anlegen"),
            T::Cancel => ("Cancel", "Abbrechen"),
            T::Back => ("Back", "Zurück"),
            T::Ok => ("OK", "OK"),
            T::Delete => ("Delete", "Löschen"),
            T::Save => ("Save", "Speichern"),
            T::SignInTitle => ("Sign in", "Anmelden"),
            T::LookAtCamera => ("Look into the camera to sign in", "Zum Anmelden in die Kamera schauen"),
            T::UsePersonnelNo => ("Sign in with personnel number", "Mit Personalnummer anmelden"),
            T::EnterPin => ("Enter your PIN", "PIN eingeben"),
            T::LookAtCameraToConfirm => ("Look into the camera to confirm", "Zur Bestätigung in die Kamera schauen"),
            T::SignOut => ("Sign out", "Abmelden"),
            T::Welcome => ("Signed in", "Angemeldet"),
            T::Administration => ("Administration", "Verwaltung"),
            T::Operators => ("Operators", "Bediener"),
            T::AuditLog => ("Audit log", "Protokoll"),
            T::Settings => ("Settings", "Einstellungen"),
            T::Enroll => ("Enroll face", "Gesicht erfassen"),
            T::ReEnroll => ("Re-enroll", "Neu erfassen"),
            T::NewOperator => ("New operator", "Neuer Bediener"),
            T::EnrollTitle => ("Face enrollment", "Gesichtserfassung"),
            T::EnrollStart => ("Start capture", "Erfassung starten"),
            T::Captured => ("Captured", "Erfasst"),
            T::Skipped => ("Frame skipped", "Bild verworfen"),
            T::Verifying => ("Checking the new enrollment…", "Neue Erfassung wird geprüft…"),
            T::EnrollDone => ("Enrollment saved and verified", "Erfassung gespeichert und geprüft"),
            T::EnrollVerifyFailed => ("Saved, but the check did not recognise the face: re-enroll in better light", "Gespeichert, aber die Prüfung erkannte das Gesicht nicht: bei besserem Licht neu erfassen"),
            T::Enrolled => ("enrolled", "erfasst"),
            T::NotEnrolled => ("no face", "kein Gesicht"),
            T::ConfirmDelete => ("Delete this operator and all their face data?", "Diesen Bediener und alle Gesichtsdaten löschen?"),
            T::Filter => ("Filter", "Filter"),
            T::ExportCsv => ("Export CSV", "CSV exportieren"),
            T::Exported => ("Exported to", "Exportiert nach"),
            T::ChainIntact => ("Log intact", "Protokoll unverändert"),
            T::ChainBroken => ("LOG TAMPERED at entry", "PROTOKOLL MANIPULIERT bei Eintrag"),
            T::Language => ("Language", "Sprache"),
            T::Camera => ("Camera", "Kamera"),
            T::Backend => ("Recognition", "Erkennung"),
            T::Recogniser => ("Recogniser", "Erkennungsverfahren"),
            T::HeadTurnChallenge => ("Head-turn check", "Kopfdrehen-Prüfung"),
            T::AskHeadTurn => ("Ask for a head turn", "Kopfdrehen verlangen"),
            T::ChallengeMotionOnly => (
                "needs dlib's models: the motion check decides alone",
                "braucht die dlib-Modelle: nur die Bewegungsprüfung gilt",
            ),
            T::DlibUnavailable => ("dlib unavailable", "dlib nicht verfügbar"),
            T::CheckingModels => ("Checking dlib's models…", "Prüfe dlib-Modelle…"),
            T::OffloadEndpoint => ("Offload endpoint", "Offload-Adresse"),
            T::TlsFiles => ("TLS files (CA, certificate, key)", "TLS-Dateien (CA, Zertifikat, Schlüssel)"),
            T::Threshold => ("Accept threshold", "Annahmeschwelle"),
            T::AutoSignOutMinutes => ("Automatic sign-out (minutes)", "Automatische Abmeldung (Minuten)"),
            T::CameraLost => ("Camera lost: reconnecting", "Kamera getrennt: verbinde neu"),
            T::CameraRestarted => ("New camera settings applied", "Neue Kameraeinstellungen aktiv"),
            T::RecognitionRestarted => ("New recognition settings applied", "Neue Erkennungseinstellungen aktiv"),
            T::PlantUnreachable => ("plant offline", "Werk offline"),
            T::CameraStarting => ("Starting camera…", "Kamera startet…"),
            T::SecretsMismatch => ("The repetition does not match", "Die Wiederholung stimmt nicht überein"),
            T::PinRule => ("PIN: 4 to 8 digits", "PIN: 4 bis 8 Ziffern"),
            T::PasswordRule => ("Password: at least 8 characters", "Passwort: mindestens 8 Zeichen"),
            T::Working => ("Please wait…", "Bitte warten…"),
            T::NotRecognised => ("Face not recognised", "Gesicht nicht erkannt"),
            T::HighContrast => ("High contrast", "Hoher Kontrast"),
            T::Display => ("Display", "Anzeige"),
            T::FaceInOval => ("Keep your face inside the oval", "Gesicht ins Oval halten"),
            T::PinHint => ("Enter your PIN, then OK", "PIN eingeben, dann OK"),
            T::Shift => ("Shift", "Umschalt"),
            T::Space => ("Space", "Leerzeichen"),
            T::ExitKiosk => ("Exit kiosk", "Terminal beenden"),
            T::Backspace => ("Del", "Entf"),
            T::Cluster => ("Cluster", "Cluster"),
            T::Kubeconfig => ("Kubeconfig file", "Kubeconfig-Datei"),
            T::RancherUrl => ("Rancher server URL", "Rancher-Server-URL"),
            T::ApiToken => ("API token", "API-Token"),
            T::ClusterName => ("Cluster name or ID", "Clustername oder -ID"),
            T::Connect => ("Connect", "Verbinden"),
            T::Refresh => ("Refresh", "Aktualisieren"),
            T::DeployUpgrade => ("Deploy / upgrade", "Installieren / aktualisieren"),
            T::Gpu => ("GPU", "GPU"),
            T::Remove => ("Remove", "Entfernen"),
            T::ConfirmRemove => ("Remove the offload service from the cluster?", "Offload-Dienst aus dem Cluster entfernen?"),
            T::AlsoDeleteGallery => ("Also delete the gallery volume", "Auch das Galerie-Volume löschen"),
            T::Node => ("Node", "Knoten"),
            T::Hardware => ("Hardware", "Hardware"),
            T::Gpus => ("GPUs", "GPUs"),
            T::NodeReady => ("ready", "bereit"),
            T::NodeNotReady => ("not ready", "nicht bereit"),
            T::NotDeployed => ("Not deployed", "Nicht installiert"),
            T::Removed => ("Removed", "Entfernt"),
            T::UseAsOffloadEndpoint => ("Use as offload endpoint", "Als Offload-Adresse verwenden"),
            T::EndpointSaved => ("Saved as the offload endpoint", "Als Offload-Adresse gespeichert"),
            T::KioskName => ("Name of this kiosk", "Name dieses Kiosks"),
            T::RegisterKiosk => ("Register this kiosk", "Diesen Kiosk registrieren"),
            T::KioskRegistered => (
                "Registered: certificate and plant PIN key saved. Restart the kiosk to use them.",
                "Registriert: Zertifikat und PIN-Schlüssel der Anlage gespeichert. Kiosk neu starten, um sie zu verwenden.",
            ),
            T::Line => ("Line (OPC UA)", "Linie (OPC UA)"),
            T::LineUnreachable => ("OPC UA failed", "OPC UA gestört"),
            T::LineServe => ("Tell the line who is signed in", "Der Linie melden, wer angemeldet ist"),
            T::LineListen => ("OPC UA address (host:port)", "OPC-UA-Adresse (Host:Port)"),
            T::LineId => ("Line ID", "Linien-ID"),
            T::AccessLevel => ("Access level", "Zugangsstufe"),
            T::AnonymousRead => ("Anonymous clients may read", "Anonyme Clients dürfen lesen"),
            T::AllowSecurityNone => ("Unsecured endpoint (commissioning only)", "Ungesicherter Endpunkt (nur Inbetriebnahme)"),
            T::LineStarting => ("Starting …", "Startet …"),
            T::LineOff => ("Off", "Aus"),
            T::SignOutAccount => ("Account for SignOut()", "Konto für SignOut()"),
            T::SignOutUser => ("User name", "Benutzername"),
            T::SignOutPassword => ("Password (8 characters or more)", "Passwort (mindestens 8 Zeichen)"),
            T::SetAccount => ("Set account", "Konto setzen"),
            T::AccountSet => ("Account saved (password stored hashed)", "Konto gespeichert (Passwort nur als Hash)"),
            T::RejectedCertificates => ("Rejected client certificates", "Abgelehnte Client-Zertifikate"),
            T::NoRejectedCertificates => ("None", "Keine"),
            T::Trust => ("Trust", "Vertrauen"),
            T::Saved => ("Saved", "Gespeichert"),
            T::ValidUntil => ("valid until", "gültig bis"),
            T::ListenFixed => ("Address set in kubevision.toml", "Adresse aus kubevision.toml"),
        };
        match lang {
            En => en,
            De => de,
        }
    }
}

pub fn role(role: Role, lang: Language) -> &'static str {
    match (role, lang) {
        (Role::Operator, Language::En) => "Operator",
        (Role::Operator, Language::De) => "Bediener",
        (Role::Maintenance, Language::En) => "Maintenance",
        (Role::Maintenance, Language::De) => "Instandhaltung",
        (Role::Administrator, Language::En) => "Administrator",
        (Role::Administrator, Language::De) => "Administrator",
    }
}

/// The kiosk's own hint for a quality issue: short, and what to do.
pub fn hint(issue: &QualityIssue, lang: Language) -> &'static str {
    let (en, de) = match issue {
        QualityIssue::NoFace => ("Look into the camera", "Bitte in die Kamera schauen"),
        QualityIssue::SeveralFaces { .. } => (
            "Only one person in view, please",
            "Bitte nur eine Person im Bild",
        ),
        QualityIssue::TooSmall { .. } => ("Come closer", "Näher herankommen"),
        QualityIssue::OffCentre => ("Move to the middle", "In die Mitte gehen"),
        QualityIssue::TooDark { .. } => (
            "Too dark: more light on the face",
            "Zu dunkel: mehr Licht aufs Gesicht",
        ),
        QualityIssue::TooBright { .. } => (
            "Too bright: avoid light from behind",
            "Zu hell: Gegenlicht vermeiden",
        ),
        QualityIssue::Blurred { .. } => ("Hold still", "Bitte stillhalten"),
    };
    match lang {
        Language::En => en,
        Language::De => de,
    }
}

/// The head-turn challenge's words: the person's own left or right.
pub fn turn(turn: Turn, lang: Language) -> &'static str {
    match (turn, lang) {
        (Turn::Left, Language::En) => "Turn your head to your left",
        (Turn::Left, Language::De) => "Kopf nach links drehen",
        (Turn::Right, Language::En) => "Turn your head to your right",
        (Turn::Right, Language::De) => "Kopf nach rechts drehen",
    }
}

/// Why a head turn did not count, short; `None` when it did.
pub fn challenge_hint(verdict: Verdict, lang: Language) -> Option<&'static str> {
    let (en, de) = match verdict {
        Verdict::Answered => return None,
        Verdict::WrongWay => ("Other way, please", "Bitte in die andere Richtung"),
        Verdict::TooLate => ("A little quicker, please", "Bitte etwas schneller"),
        Verdict::TooEarly => (
            "Look at the camera until the arrow shows",
            "In die Kamera schauen, bis der Pfeil erscheint",
        ),
        Verdict::Jump => (
            "Turn slowly, in one movement",
            "Langsam und in einem Zug drehen",
        ),
        Verdict::OtherFace => (
            "Face not recognised while turning",
            "Gesicht beim Drehen nicht erkannt",
        ),
        Verdict::NoTurn | Verdict::TooFewFrames => (
            "Turn your head as the arrow shows",
            "Kopf drehen, wie der Pfeil zeigt",
        ),
    };
    Some(match lang {
        Language::En => en,
        Language::De => de,
    })
}

/// A sign-in notice; `until` times are shown as remaining seconds.
pub fn notice(n: Notice, lang: Language, now: crate::store::Millis) -> String {
    let de = lang == Language::De;
    match n {
        Notice::WrongCredentials => if de {
            "Anmeldedaten falsch"
        } else {
            "Wrong credentials"
        }
        .into(),
        Notice::Locked { until } => {
            let s = ((until - now).max(0) + 999) / 1000;
            if de {
                format!("Gesperrt: noch {s} s warten")
            } else {
                format!("Locked: wait {s} s")
            }
        }
        Notice::FaceFirstNotAllowed => if de {
            "Ihre Rolle meldet sich mit Personalnummer an"
        } else {
            "Your role signs in with the personnel number"
        }
        .into(),
        Notice::PasswordFirstNotAllowed => if de {
            "Ihre Rolle meldet sich per Gesicht an"
        } else {
            "Your role signs in with the face first"
        }
        .into(),
        Notice::NoFaceEnrolled => if de {
            "Kein Gesicht erfasst: bitte Administrator fragen"
        } else {
            "No face enrolled: ask an administrator"
        }
        .into(),
        Notice::FaceMismatch => if de {
            "Gesicht passt nicht"
        } else {
            "Face does not match"
        }
        .into(),
        Notice::NotLive => if de {
            "Kein lebendes Gesicht erkannt"
        } else {
            "No live face detected"
        }
        .into(),
        Notice::TimedOut => if de { "Zeit abgelaufen" } else { "Timed out" }.into(),
        Notice::SignedOut => if de { "Abgemeldet" } else { "Signed out" }.into(),
        Notice::AutoSignedOut => if de {
            "Wegen Inaktivität abgemeldet"
        } else {
            "Signed out after inactivity"
        }
        .into(),
    }
}

//! The `SignedIn` and `SignedOut` events: which ones a new
//! [`SessionState`] raises ([`changes`]), and the events themselves.
//!
//! Variables tell a subscriber the *current* state; a subscriber that was
//! away, or polls slowly, can miss a short session entirely. Events are the
//! history: every sign-in and sign-out is one event, with the fields of the
//! session (never a face, photo or PIN: [`SessionState`] has no such field).
//!
//! Both types are subtypes of BaseEventType in our namespace
//! (`ns=<i>;s=KubeVision.SignedInEventType`, `…SignedOutEventType`), with one
//! property per session field. The `KubeVision.Session` object is their source
//! and an event notifier; the stack also hands every event to subscribers of
//! the Server object, so both work as the place to subscribe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ::opcua::nodes::{BaseEventType, Event};
use ::opcua::types::{ByteString, DateTime, LocalizedText, NodeId, UAString};

use crate::nodes::{SESSION, SIGNED_IN_EVENT_TYPE, SIGNED_OUT_EVENT_TYPE};
use crate::state::{opc_time, SessionState};

/// Severity of both events (1–1000): routine information, not an alarm.
pub const SEVERITY: u16 = 100;

/// What a new state means for the line, in the order to raise the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// The session that ended (the fields it had).
    SignedOut(SessionState),
    /// The session that began, or the new level of the current one.
    SignedIn(SessionState),
}

/// The events raised when the published state goes from `prev` to `next`.
///
/// - A session *ends* when the state becomes signed out, or when a different
///   person (personnel number) or a new sign-in (`signed_in_at`) replaces it
///   without a sign-out in between: `SignedOut` with the old session's fields.
/// - A session *begins* after a signed-out state or after one that ended:
///   `SignedIn` with the new fields. A new access level for the same session
///   also raises `SignedIn`, so a subscriber to events alone learns the level
///   the line now acts on.
/// - Anything else (the same state published again, a new `expires_at`)
///   raises nothing.
pub(crate) fn changes(prev: &SessionState, next: &SessionState) -> Vec<Change> {
    let mut out = Vec::new();
    let ended = prev.signed_in
        && (!next.signed_in
            || prev.personnel_number != next.personnel_number
            || prev.signed_in_at != next.signed_in_at);
    if ended {
        out.push(Change::SignedOut(prev.clone()));
    }
    if next.signed_in && (!prev.signed_in || ended || prev.access_level != next.access_level) {
        out.push(Change::SignedIn(next.clone()));
    }
    out
}

// The two event types: the same fields, one struct each, because the derive
// binds a struct to one type NodeId. Field names are the property browse
// names in PascalCase (PersonnelNumber, …); the derive matches select clauses
// by name.
macro_rules! session_event {
    ($name:ident, $identifier:literal) => {
        #[derive(::opcua::Event)]
        #[opcua(identifier = $identifier, namespace = "urn:kubevision:line")]
        pub(crate) struct $name {
            base: BaseEventType,
            own_namespace_index: u16,
            personnel_number: UAString,
            display_name: UAString,
            role: UAString,
            access_level: u16,
            signed_in_at: DateTime,
            factors: UAString,
            expires_at: DateTime,
        }
    };
}

session_event!(SignedInEvent, "s=KubeVision.SignedInEventType");
session_event!(SignedOutEvent, "s=KubeVision.SignedOutEventType");

/// A new, unique EventId: the time in nanoseconds and a counter, so two
/// events of one instant differ and ids stay unique across restarts.
fn event_id() -> ByteString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&nanos.to_be_bytes());
    id.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    ByteString::from(id)
}

/// Who the message names: the personnel number, else the display name.
fn who(s: &SessionState) -> &str {
    if !s.personnel_number.is_empty() {
        &s.personnel_number
    } else if !s.display_name.is_empty() {
        &s.display_name
    } else {
        "an operator"
    }
}

fn base(ns: u16, type_id: &str, message: String, now: DateTime) -> BaseEventType {
    BaseEventType::new(
        NodeId::new(ns, type_id),
        event_id(),
        LocalizedText::new("en", &message),
        now,
    )
    .set_source_node(NodeId::new(ns, SESSION))
    .set_source_name("Session".into())
    .set_severity(SEVERITY)
}

/// The event for a change, in namespace `ns`, at `now`.
pub(crate) fn event(ns: u16, change: &Change, now: DateTime) -> Box<dyn Event + Send> {
    macro_rules! fill {
        ($ty:ident, $type_id:expr, $message:expr, $s:expr) => {{
            let s: &SessionState = $s;
            Box::new($ty {
                base: base(ns, $type_id, $message, now),
                own_namespace_index: ns,
                personnel_number: s.personnel_number.as_str().into(),
                display_name: s.display_name.as_str().into(),
                role: s.role.as_str().into(),
                access_level: s.access_level,
                signed_in_at: opc_time(s.signed_in_at),
                factors: s.factors.as_str().into(),
                expires_at: opc_time(s.expires_at),
            })
        }};
    }
    match change {
        Change::SignedIn(s) => fill!(
            SignedInEvent,
            SIGNED_IN_EVENT_TYPE,
            format!("{} signed in (access level {})", who(s), s.access_level),
            s
        ),
        Change::SignedOut(s) => fill!(
            SignedOutEvent,
            SIGNED_OUT_EVENT_TYPE,
            format!("{} signed out", who(s)),
            s
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ::opcua::types::{AttributeId, NumericRange, ObjectTypeId, QualifiedName, Variant};

    use super::*;

    fn person(number: &str, level: u16, at: u64) -> SessionState {
        SessionState {
            signed_in: true,
            personnel_number: number.into(),
            display_name: "Ada Lovelace".into(),
            role: "shift lead".into(),
            access_level: level,
            signed_in_at: Some(UNIX_EPOCH + Duration::from_secs(at)),
            factors: "face+pin".into(),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(at + 900)),
        }
    }

    #[test]
    fn sign_in_and_sign_out_raise_one_event_each() {
        let out = SessionState::signed_out();
        let ada = person("P-1042", 3, 1_700_000_000);
        assert_eq!(changes(&out, &ada), vec![Change::SignedIn(ada.clone())]);
        // The SignedOut event carries the session that ended.
        assert_eq!(changes(&ada, &out), vec![Change::SignedOut(ada.clone())]);
        assert_eq!(changes(&out, &out), vec![]);
    }

    #[test]
    fn the_same_session_published_again_raises_nothing() {
        let ada = person("P-1042", 3, 1_700_000_000);
        assert_eq!(changes(&ada, &ada), vec![]);
        let mut extended = ada.clone();
        extended.expires_at = Some(UNIX_EPOCH + Duration::from_secs(1_700_009_999));
        assert_eq!(changes(&ada, &extended), vec![]);
    }

    #[test]
    fn a_new_level_raises_sign_in_again() {
        let ada = person("P-1042", 3, 1_700_000_000);
        let higher = person("P-1042", 5, 1_700_000_000);
        assert_eq!(
            changes(&ada, &higher),
            vec![Change::SignedIn(higher.clone())]
        );
    }

    #[test]
    fn another_person_ends_the_previous_session_first() {
        let ada = person("P-1042", 3, 1_700_000_000);
        let bob = person("P-2001", 3, 1_700_000_100);
        assert_eq!(
            changes(&ada, &bob),
            vec![
                Change::SignedOut(ada.clone()),
                Change::SignedIn(bob.clone())
            ]
        );
        // The same person signing in anew is a new session too.
        let again = person("P-1042", 3, 1_700_000_500);
        assert_eq!(
            changes(&ada, &again),
            vec![Change::SignedOut(ada), Change::SignedIn(again)]
        );
    }

    fn field(event: &dyn Event, name: &str, ns: u16) -> Variant {
        event.get_field(
            &ObjectTypeId::BaseEventType.into(),
            AttributeId::Value,
            &NumericRange::None,
            &[QualifiedName::new(ns, name)],
        )
    }

    #[test]
    fn events_carry_the_session_fields_and_our_type() {
        let ns = 2;
        let ada = person("P-1042", 3, 1_700_000_000);
        let e = event(ns, &Change::SignedIn(ada.clone()), DateTime::now());
        assert_eq!(e.event_type_id(), &NodeId::new(ns, SIGNED_IN_EVENT_TYPE));
        assert_eq!(field(&*e, "PersonnelNumber", ns), Variant::from("P-1042"));
        assert_eq!(field(&*e, "AccessLevel", ns), Variant::UInt16(3));
        assert_eq!(field(&*e, "Factors", ns), Variant::from("face+pin"));
        let Variant::DateTime(at) = field(&*e, "SignedInAt", ns) else {
            panic!("SignedInAt is not a DateTime")
        };
        assert_eq!(at.as_chrono().timestamp(), 1_700_000_000);
        // BaseEventType's own fields, from namespace 0.
        assert_eq!(field(&*e, "Severity", 0), Variant::UInt16(SEVERITY));
        let Variant::LocalizedText(message) = field(&*e, "Message", 0) else {
            panic!("Message is not a LocalizedText")
        };
        assert_eq!(message.text.as_ref(), "P-1042 signed in (access level 3)");
        assert_eq!(
            field(&*e, "SourceNode", 0),
            Variant::from(NodeId::new(ns, SESSION))
        );
        // The field is read through the subtype as well.
        assert_eq!(
            e.get_field(
                &NodeId::new(ns, SIGNED_IN_EVENT_TYPE),
                AttributeId::Value,
                &NumericRange::None,
                &[QualifiedName::new(ns, "Role")],
            ),
            Variant::from("shift lead")
        );

        let out = event(ns, &Change::SignedOut(ada), DateTime::now());
        assert_eq!(out.event_type_id(), &NodeId::new(ns, SIGNED_OUT_EVENT_TYPE));
        assert_eq!(field(&*out, "PersonnelNumber", ns), Variant::from("P-1042"));
        // Two events never share an EventId.
        assert_ne!(field(&*e, "EventId", 0), field(&*out, "EventId", 0));
    }
}

//! What the line is told: the kiosk's [`Line`] and its [`SessionState`], and
//! the pure mapping from that state to the values of the `Session` variables.
//!
//! The mapping is kept apart from the server so that it can be tested without
//! a socket, and so that the one rule that matters after a fault — a kiosk
//! that knows nothing says `SignedIn = false` with every other field empty —
//! lives in one place ([`SessionState::signed_out`], also the `Default`).
//!
//! Only identity and access data cross this boundary: no face template, photo
//! or PIN is a field here, so none can reach the address space.

use std::time::{SystemTime, UNIX_EPOCH};

use ::opcua::types::{DateTime, Variant};

use crate::nodes::SessionVariable;

/// The line and kiosk this server speaks for (the `Line` object).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Line {
    /// The plant's identifier of the production line.
    pub line_id: String,
    /// The kiosk's own name, as shown on its status bar.
    pub kiosk_name: String,
}

/// Who is signed in at the kiosk (the `Session` object). Plain data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionState {
    /// `true` while an operator is signed in.
    pub signed_in: bool,
    pub personnel_number: String,
    pub display_name: String,
    pub role: String,
    /// The EKS-style level the line's PLC acts on; 0 when nobody is signed in.
    pub access_level: u16,
    /// When the operator signed in; `None` when signed out (a null DateTime).
    pub signed_in_at: Option<SystemTime>,
    /// What the person proved, e.g. `"face+pin"`.
    pub factors: String,
    /// The automatic sign-out; `None` when signed out or when there is none.
    pub expires_at: Option<SystemTime>,
}

impl SessionState {
    /// Nobody signed in: the state at start and after every sign-out.
    pub fn signed_out() -> Self {
        Self::default()
    }

    /// The value of every `Session` variable for this state, in
    /// [`SessionVariable::ALL`] order. A signed-out state publishes empty
    /// strings, level 0 and null times even if stale fields were left set, so
    /// the line never sees the last operator's identity after a sign-out.
    pub fn values(&self) -> Vec<(SessionVariable, Variant)> {
        let empty = SessionState::signed_out();
        let s = if self.signed_in { self } else { &empty };
        SessionVariable::ALL
            .iter()
            .map(|&var| {
                let value = match var {
                    SessionVariable::SignedIn => Variant::from(s.signed_in),
                    SessionVariable::PersonnelNumber => Variant::from(s.personnel_number.clone()),
                    SessionVariable::DisplayName => Variant::from(s.display_name.clone()),
                    SessionVariable::Role => Variant::from(s.role.clone()),
                    SessionVariable::AccessLevel => Variant::from(s.access_level),
                    SessionVariable::SignedInAt => Variant::from(opc_time(s.signed_in_at)),
                    SessionVariable::Factors => Variant::from(s.factors.clone()),
                    SessionVariable::ExpiresAt => Variant::from(opc_time(s.expires_at)),
                };
                (var, value)
            })
            .collect()
    }
}

/// 100 ns ticks between 1601-01-01 (OPC UA's epoch) and 1970-01-01.
const UNIX_EPOCH_TICKS: i64 = 116_444_736_000_000_000;

/// An OPC UA DateTime (UTC) for a time; `None` and times before 1970 map to
/// the null DateTime, which clients show as "no value".
pub(crate) fn opc_time(t: Option<SystemTime>) -> DateTime {
    match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        Some(d) => {
            let ticks = i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX - UNIX_EPOCH_TICKS);
            DateTime::from(UNIX_EPOCH_TICKS + ticks)
        }
        None => DateTime::null(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn operator() -> SessionState {
        SessionState {
            signed_in: true,
            personnel_number: "P-1042".into(),
            display_name: "Ada Lovelace".into(),
            role: "shift lead".into(),
            access_level: 3,
            signed_in_at: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            factors: "face+pin".into(),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_900)),
        }
    }

    fn value(state: &SessionState, var: SessionVariable) -> Variant {
        state
            .values()
            .into_iter()
            .find(|(v, _)| *v == var)
            .unwrap()
            .1
    }

    #[test]
    fn every_variable_has_one_value_in_order() {
        let vars: Vec<_> = operator().values().into_iter().map(|(v, _)| v).collect();
        assert_eq!(vars, SessionVariable::ALL.to_vec());
    }

    #[test]
    fn signed_in_state_maps_to_typed_values() {
        let s = operator();
        assert_eq!(value(&s, SessionVariable::SignedIn), Variant::Boolean(true));
        assert_eq!(
            value(&s, SessionVariable::PersonnelNumber),
            Variant::from("P-1042")
        );
        assert_eq!(
            value(&s, SessionVariable::DisplayName),
            Variant::from("Ada Lovelace")
        );
        assert_eq!(
            value(&s, SessionVariable::Role),
            Variant::from("shift lead")
        );
        // UInt16, not Int32: a WinCC tag of type UInt must match the node.
        assert_eq!(value(&s, SessionVariable::AccessLevel), Variant::UInt16(3));
        assert_eq!(
            value(&s, SessionVariable::Factors),
            Variant::from("face+pin")
        );
        let Variant::DateTime(at) = value(&s, SessionVariable::SignedInAt) else {
            panic!("SignedInAt is not a DateTime")
        };
        assert_eq!(at.as_chrono().timestamp(), 1_700_000_000);
        let Variant::DateTime(exp) = value(&s, SessionVariable::ExpiresAt) else {
            panic!("ExpiresAt is not a DateTime")
        };
        assert_eq!(exp.as_chrono().timestamp(), 1_700_000_900);
    }

    #[test]
    fn signed_out_state_clears_every_field_even_if_stale_data_is_left() {
        let mut stale = operator();
        stale.signed_in = false;
        assert_eq!(stale.values(), SessionState::signed_out().values());
        let s = SessionState::signed_out();
        assert_eq!(
            value(&s, SessionVariable::SignedIn),
            Variant::Boolean(false)
        );
        assert_eq!(value(&s, SessionVariable::AccessLevel), Variant::UInt16(0));
        assert_eq!(
            value(&s, SessionVariable::PersonnelNumber),
            Variant::from("")
        );
        assert_eq!(
            value(&s, SessionVariable::SignedInAt),
            Variant::DateTime(Box::new(DateTime::null()))
        );
    }

    #[test]
    fn times_before_1970_or_absent_are_null() {
        assert!(opc_time(None).is_null());
        assert!(opc_time(Some(UNIX_EPOCH - Duration::from_secs(1))).is_null());
        assert_eq!(opc_time(Some(UNIX_EPOCH)).ticks(), UNIX_EPOCH_TICKS);
    }
}

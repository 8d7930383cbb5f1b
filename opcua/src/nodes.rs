//! The address space: our namespace URI, the stable string NodeIds, and the
//! nodes themselves.
//!
//! Integrators configure tags by NodeId (a WinCC Unified tag, an S7-1500 OPC
//! UA client), so every node has a string identifier that spells its browse
//! path, `ns=<ours>;s=KubeVision.Session.AccessLevel`, and that never changes
//! between versions. The namespace *index* is assigned by the server at
//! start; clients resolve it from [`NAMESPACE_URI`] in the NamespaceArray.
//!
//! ```text
//! Objects
//! └─ KubeVision                    (Object)  s=KubeVision
//!    ├─ Line                       (Object)  s=KubeVision.Line
//!    │  ├─ LineId        String              s=KubeVision.Line.LineId
//!    │  └─ KioskName     String              s=KubeVision.Line.KioskName
//!    └─ Session                    (Object, event notifier)  s=KubeVision.Session
//!       ├─ SignedIn        Boolean           s=KubeVision.Session.SignedIn
//!       ├─ PersonnelNumber String            s=KubeVision.Session.PersonnelNumber
//!       ├─ DisplayName     String            s=KubeVision.Session.DisplayName
//!       ├─ Role            String            s=KubeVision.Session.Role
//!       ├─ AccessLevel     UInt16            s=KubeVision.Session.AccessLevel
//!       ├─ SignedInAt      DateTime          s=KubeVision.Session.SignedInAt
//!       ├─ Factors         String            s=KubeVision.Session.Factors
//!       ├─ ExpiresAt       DateTime          s=KubeVision.Session.ExpiresAt
//!       └─ SignOut()       Method            s=KubeVision.Session.SignOut
//!
//! Types/ObjectTypes/BaseObjectType/BaseEventType
//! ├─ SignedInEventType             (ObjectType)  s=KubeVision.SignedInEventType
//! │  └─ PersonnelNumber … ExpiresAt (properties) s=KubeVision.SignedInEventType.<name>
//! └─ SignedOutEventType            (ObjectType)  s=KubeVision.SignedOutEventType
//!    └─ PersonnelNumber … ExpiresAt (properties) s=KubeVision.SignedOutEventType.<name>
//! ```
//!
//! `Session` is the source of both events and an event notifier (clients may
//! subscribe to events there or at the Server object, which has a
//! `HasNotifier` reference to it). The event properties are the `Session`
//! variables except `SignedIn`, with the same names and data types.
//!
//! Every variable is read-only over OPC UA: the kiosk is the only writer.

use ::opcua::nodes::{
    EventNotifier, MethodBuilder, ObjectBuilder, ObjectTypeBuilder, ReferenceDirection,
    VariableBuilder,
};
use ::opcua::server::address_space::AddressSpace;
use ::opcua::types::{
    DataTypeId, NodeId, ObjectId, ObjectTypeId, QualifiedName, ReferenceTypeId, VariableTypeId,
};

use crate::state::{Line, SessionState};

/// Our namespace URI (not the application URI: that one names the server's
/// own diagnostics namespace).
pub const NAMESPACE_URI: &str = "urn:kubevision:line";

/// The root object under Objects.
pub const ROOT: &str = "KubeVision";
pub const LINE: &str = "KubeVision.Line";
pub const LINE_ID: &str = "KubeVision.Line.LineId";
pub const KIOSK_NAME: &str = "KubeVision.Line.KioskName";
pub const SESSION: &str = "KubeVision.Session";
/// The `SignOut()` method, a component of `Session`; no arguments.
pub const SIGN_OUT: &str = "KubeVision.Session.SignOut";
/// The event type raised when an operator signs in (or the level of the
/// current session changes), a subtype of BaseEventType.
pub const SIGNED_IN_EVENT_TYPE: &str = "KubeVision.SignedInEventType";
/// The event type raised when a session ends, with the ended session's fields.
pub const SIGNED_OUT_EVENT_TYPE: &str = "KubeVision.SignedOutEventType";

/// The variables of the `Session` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionVariable {
    SignedIn,
    PersonnelNumber,
    DisplayName,
    Role,
    AccessLevel,
    SignedInAt,
    Factors,
    ExpiresAt,
}

impl SessionVariable {
    /// All of them, in address-space order.
    pub const ALL: [SessionVariable; 8] = [
        SessionVariable::SignedIn,
        SessionVariable::PersonnelNumber,
        SessionVariable::DisplayName,
        SessionVariable::Role,
        SessionVariable::AccessLevel,
        SessionVariable::SignedInAt,
        SessionVariable::Factors,
        SessionVariable::ExpiresAt,
    ];

    /// The browse name (also the last part of the NodeId).
    pub fn name(self) -> &'static str {
        match self {
            SessionVariable::SignedIn => "SignedIn",
            SessionVariable::PersonnelNumber => "PersonnelNumber",
            SessionVariable::DisplayName => "DisplayName",
            SessionVariable::Role => "Role",
            SessionVariable::AccessLevel => "AccessLevel",
            SessionVariable::SignedInAt => "SignedInAt",
            SessionVariable::Factors => "Factors",
            SessionVariable::ExpiresAt => "ExpiresAt",
        }
    }

    /// The string identifier, e.g. `KubeVision.Session.AccessLevel`.
    pub fn node_id_str(self) -> String {
        format!("{SESSION}.{}", self.name())
    }

    /// The NodeId in namespace `ns`.
    pub fn node_id(self, ns: u16) -> NodeId {
        NodeId::new(ns, self.node_id_str())
    }

    /// Whether this variable is also a property of the SignedIn and
    /// SignedOut events: all but `SignedIn` (the event type says that).
    pub fn is_event_field(self) -> bool {
        self != SessionVariable::SignedIn
    }

    fn data_type(self) -> DataTypeId {
        match self {
            SessionVariable::SignedIn => DataTypeId::Boolean,
            SessionVariable::AccessLevel => DataTypeId::UInt16,
            SessionVariable::SignedInAt | SessionVariable::ExpiresAt => DataTypeId::DateTime,
            _ => DataTypeId::String,
        }
    }
}

/// Adds the `KubeVision` tree and the two event types to `space` in
/// namespace `ns`, with the line's values and a signed-out session (the
/// truth after any restart).
pub(crate) fn build(space: &mut AddressSpace, ns: u16, line: &Line) {
    let id = |s: &str| NodeId::new(ns, s);
    let name = |s: &str| QualifiedName::new(ns, s);

    ObjectBuilder::new(&id(ROOT), name("KubeVision"), "KubeVision")
        .organized_by(ObjectId::ObjectsFolder)
        .has_type_definition(ObjectTypeId::BaseObjectType)
        .insert(space);
    ObjectBuilder::new(&id(LINE), name("Line"), "Line")
        .component_of(id(ROOT))
        .has_type_definition(ObjectTypeId::BaseObjectType)
        .insert(space);
    ObjectBuilder::new(&id(SESSION), name("Session"), "Session")
        .component_of(id(ROOT))
        .has_type_definition(ObjectTypeId::BaseObjectType)
        .event_notifier(EventNotifier::SUBSCRIBE_TO_EVENTS)
        // Where clients that walk the notifier tree from the Server object
        // find it (the stack itself delivers every event to Server
        // subscribers anyway).
        .reference(
            ObjectId::Server,
            ReferenceTypeId::HasNotifier,
            ReferenceDirection::Inverse,
        )
        .insert(space);
    for (node, browse, value) in [
        (LINE_ID, "LineId", &line.line_id),
        (KIOSK_NAME, "KioskName", &line.kiosk_name),
    ] {
        VariableBuilder::new(&id(node), name(browse), browse)
            .data_type(DataTypeId::String)
            .value(value.clone())
            .has_type_definition(VariableTypeId::BaseDataVariableType)
            .component_of(id(LINE))
            .insert(space);
    }
    for (var, value) in SessionState::signed_out().values() {
        VariableBuilder::new(&var.node_id(ns), name(var.name()), var.name())
            .data_type(var.data_type())
            .value(value)
            .has_type_definition(VariableTypeId::BaseDataVariableType)
            .component_of(id(SESSION))
            .insert(space);
    }
    MethodBuilder::new(&id(SIGN_OUT), name("SignOut"), "SignOut")
        .component_of(id(SESSION))
        .insert(space);

    for (event_type, browse) in [
        (SIGNED_IN_EVENT_TYPE, "SignedInEventType"),
        (SIGNED_OUT_EVENT_TYPE, "SignedOutEventType"),
    ] {
        ObjectTypeBuilder::new(&id(event_type), name(browse), browse)
            .subtype_of(ObjectTypeId::BaseEventType)
            .is_abstract(false)
            .insert(space);
        // Instance declarations: the type's properties, Mandatory in every
        // event. Their values are the signed-out ones (an empty string, 0, a
        // null DateTime), only so that they are of the declared data type.
        for (var, value) in SessionState::signed_out().values() {
            if !var.is_event_field() {
                continue;
            }
            VariableBuilder::new(
                &id(&format!("{event_type}.{}", var.name())),
                name(var.name()),
                var.name(),
            )
            .data_type(var.data_type())
            .value(value)
            .has_type_definition(VariableTypeId::PropertyType)
            .has_modelling_rule(ObjectId::ModellingRule_Mandatory)
            .property_of(id(event_type))
            .insert(space);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_spell_the_browse_path() {
        assert_eq!(
            SessionVariable::AccessLevel.node_id_str(),
            "KubeVision.Session.AccessLevel"
        );
        for var in SessionVariable::ALL {
            assert_eq!(
                var.node_id_str(),
                format!("KubeVision.Session.{}", var.name())
            );
        }
        assert_eq!(SIGN_OUT, "KubeVision.Session.SignOut");
        assert_eq!(LINE_ID, "KubeVision.Line.LineId");
        assert_eq!(SIGNED_IN_EVENT_TYPE, "KubeVision.SignedInEventType");
        assert_eq!(SIGNED_OUT_EVENT_TYPE, "KubeVision.SignedOutEventType");
    }
}

//! Our node manager: the `KubeVision` tree in memory, `SignOut()` with the
//! caller's user name, and no writes.
//!
//! async-opcua's `SimpleNodeManager` would keep the tree as well, but its
//! method callbacks see only the arguments, not the session; the kiosk's
//! audit row needs to know *who* asked for the sign-out, so the method runs
//! here with the request's context.
//!
//! Also here: [`SessionTracker`], which notes every session that creates
//! monitored items, so that a closing kiosk can wait until those sessions'
//! subscriptions have sent the signed-out state (see `server.rs`).

use std::collections::HashSet;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use ::opcua::server::address_space::AddressSpace;
use ::opcua::server::diagnostics::NamespaceMetadata;
use ::opcua::server::node_manager::memory::{InMemoryNodeManager, InMemoryNodeManagerImpl};
use ::opcua::server::node_manager::{
    MethodCall, RequestContext, ServerContext, TypeTreeForUser, TypeTreeForUserStatic,
    TypeTreeReadContext, WriteNode,
};
use ::opcua::server::{CreateMonitoredItem, SubscriptionCache};
use ::opcua::sync::RwLock;
use ::opcua::types::{AttributeId, NodeId, StatusCode, TimestampsToReturn};
use async_trait::async_trait;

use crate::auth::user_name;
use crate::nodes::SIGN_OUT;
use crate::server::SignOutRequest;

pub(crate) type KioskNodeManager = InMemoryNodeManager<KioskNodes>;

pub(crate) struct KioskNodes {
    pub(crate) namespace: NamespaceMetadata,
    pub(crate) sign_out_tx: mpsc::Sender<SignOutRequest>,
}

impl KioskNodes {
    fn sign_out_id(&self) -> NodeId {
        NodeId::new(self.namespace.namespace_index, SIGN_OUT)
    }
}

#[async_trait]
impl InMemoryNodeManagerImpl for KioskNodes {
    async fn init(&self, _address_space: &mut AddressSpace, _context: ServerContext) {
        // The tree is built with the node manager (server.rs), before the
        // stack loads its types into the type tree.
    }

    fn name(&self) -> &str {
        "kubevision"
    }

    fn namespaces(&self) -> Vec<NamespaceMetadata> {
        vec![self.namespace.clone()]
    }

    /// What the stack's default does (the current value as the first
    /// notification), and then the sampling interval revised down to
    /// [`PUSHED_SAMPLING_INTERVAL_MS`] wherever the client asked for a
    /// positive one.
    ///
    /// Why: our values are pushed (`set_values`), never sampled, and
    /// async-opcua 0.19 *loses* a pushed change that comes sooner than the
    /// sampling interval after the previous one: it parks it as a "skipped
    /// sample" to send one interval later, but the subscription forgets the
    /// item at its next publishing tick, so the parked value only goes out
    /// with the item's next change (for a sign-out, the next sign-in). A
    /// sign-in and a sign-out within 250 ms (an HMI's usual sampling
    /// interval) then leave the line believing someone is signed in. See
    /// README, "Known limitations".
    async fn create_value_monitored_items(
        &self,
        context: &RequestContext,
        address_space: &RwLock<AddressSpace>,
        items: &mut [&mut &mut CreateMonitoredItem],
    ) {
        let to_read: Vec<_> = items.iter().map(|r| r.item_to_monitor()).collect();
        let values = self
            .read_values(
                context,
                address_space,
                &to_read,
                0.0,
                TimestampsToReturn::Both,
            )
            .await;
        for (value, item) in values.into_iter().zip(items.iter_mut()) {
            if value.status() != StatusCode::BadAttributeIdInvalid {
                item.set_initial_value(value);
            }
            item.set_status(StatusCode::Good);
            if item.item_to_monitor().attribute_id == AttributeId::Value {
                revise_sampling_interval(item);
            }
        }
    }

    async fn write(
        &self,
        _context: &RequestContext,
        _address_space: &RwLock<AddressSpace>,
        nodes_to_write: &mut [&mut WriteNode],
    ) -> Result<(), StatusCode> {
        // Every variable's AccessLevel says read-only; this is the backstop.
        for node in nodes_to_write {
            node.set_status(StatusCode::BadNotWritable);
        }
        Ok(())
    }

    async fn call(
        &self,
        context: &RequestContext,
        _address_space: &RwLock<AddressSpace>,
        methods_to_call: &mut [&mut &mut MethodCall],
    ) -> Result<(), StatusCode> {
        // The stack has already refused anonymous sessions (auth.rs,
        // is_user_executable) and calls with arguments.
        let sign_out = self.sign_out_id();
        for method in methods_to_call {
            if method.method_id() != &sign_out {
                method.set_status(StatusCode::BadMethodInvalid);
                continue;
            }
            let Some(user) = user_name(&context.token) else {
                method.set_status(StatusCode::BadUserAccessDenied);
                continue;
            };
            tracing::info!(user, "OPC UA: SignOut() called");
            // The owner may have gone; the call still succeeds for the
            // client, and the next start is signed out anyway.
            let _ = self.sign_out_tx.send(SignOutRequest {
                user: user.to_owned(),
            });
            method.set_outputs(Vec::new());
            method.set_status(StatusCode::Good);
        }
        Ok(())
    }
}

/// The sampling interval granted for a positive request on our variables:
/// the smallest the stack represents (1 µs). Zero, asked for or revised,
/// means "every change as it happens" and stays zero; -1 (the publishing
/// interval) stays as asked, the stack sends those on its publishing tick.
/// A positive interval of 1 µs can only hold back a change that comes
/// within 1 µs of the previous one, and one publish is slower than that.
pub(crate) const PUSHED_SAMPLING_INTERVAL_MS: f64 = 0.001;

/// See [`KioskNodes::create_value_monitored_items`]. The stack only lets a
/// node manager lower an interval that is positive.
pub(crate) fn revise_sampling_interval(item: &mut CreateMonitoredItem) {
    if item.sampling_interval() > PUSHED_SAMPLING_INTERVAL_MS {
        item.revise_sampling_interval(PUSHED_SAMPLING_INTERVAL_MS);
    }
}

/// The stack's default type tree getter, plus a note of every session that
/// asks for it. CreateMonitoredItems always does, whichever node the items
/// are on (our variables, or events at the Server object), so the set holds
/// every session that may be subscribed to us. Closed sessions are pruned by
/// [`SessionTracker::delivery`].
#[derive(Default)]
pub(crate) struct SessionTracker {
    sessions: Mutex<HashSet<u32>>,
}

impl TypeTreeForUser for SessionTracker {
    fn get_type_tree_for_user<'a>(
        &'a self,
        ctx: &'a RequestContext,
    ) -> Box<dyn TypeTreeReadContext + 'a> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ctx.session_id);
        Box::new(ctx.type_tree.read())
    }

    fn get_type_tree_static(&self, ctx: &RequestContext) -> Arc<dyn TypeTreeForUserStatic> {
        ctx.type_tree.clone()
    }
}

/// What the known subscriptions still have to send.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Delivery {
    /// Some monitored item holds a notification not yet put into a message.
    pub(crate) pending: bool,
    /// Some event monitored item holds a notification not yet put into a
    /// message.
    pub(crate) events_pending: bool,
    /// The longest publishing interval among the subscriptions.
    pub(crate) longest_interval: Duration,
}

impl SessionTracker {
    /// Whether any subscription of a known session still holds an unsent
    /// notification. Forgets sessions that have no subscriptions left.
    pub(crate) fn delivery(&self, subscriptions: &SubscriptionCache) -> Delivery {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut delivery = Delivery::default();
        sessions.retain(|&id| {
            let Some(session) = subscriptions.get_session_subscriptions(id) else {
                return false;
            };
            let session = session.lock();
            for sub_id in session.subscription_ids() {
                let Some(sub) = session.get(sub_id) else {
                    continue;
                };
                delivery.longest_interval =
                    delivery.longest_interval.max(sub.publishing_interval());
                if !sub.publishing_enabled() {
                    continue;
                }
                for item in sub.items().filter(|item| item.has_notifications()) {
                    delivery.pending = true;
                    if item.item_to_monitor().attribute_id == AttributeId::EventNotifier {
                        delivery.events_pending = true;
                    }
                }
            }
            true
        });
        delivery
    }
}

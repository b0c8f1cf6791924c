//! Broker-verified sender identities: who may send as which [`Address`], and the broker permissions that make a
//! sender's identity something the broker vouches for rather than something the envelope claims.
//!
//! # Principals and their broker users (namespace `NS`)
//! | principal | broker user | may send as |
//! |---|---|---|
//! | [`Principal::Manager`] | `NS.manager` | `manager` |
//! | [`Principal::Component`] | `NS.component.NAME` | `component/NAME` |
//! | [`Principal::Operator`] | `NS.operator` | any `client/…` (CLI reply inboxes have random names) |
//!
//! # How each transport proves the sender
//! - RabbitMQ: every publish carries the AMQP `user_id` property set to the connection's user; RabbitMQ itself
//!   refuses a publish whose `user_id` differs from the authenticated user. The receiver maps `envelope.from` to
//!   the user that must have sent it ([`Principal::user`]) and compares.
//! - NATS: the receiving side sees no user, only the subject. So the sender is part of the subject
//!   (`NS.inbox.<to>.<from>`, `NS.broadcast.<from>`, see [`crate::nats`]) and each user may publish only on
//!   subjects ending in its own sender tokens ([`nats_permissions`]). A receiver compares the sender tokens of the
//!   subject with `envelope.from`.
//!
//! A subscription with a [`SenderCheck`] dead-letters any envelope whose `from` does not match, with the reason,
//! and counts it in `acv_bus_sender_rejected_total`.

use std::fmt;

use acv_protocol::{Address, ComponentName};

use crate::config::Transport;

/// An agent role that holds its own broker credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// The manager: the control plane; administers the namespace's topology.
    Manager,
    /// The sidecar of one component.
    Component(ComponentName),
    /// Operators' clients (`acvctl`, API callers): may send as any `client/…` address.
    Operator,
}

/// How a subscription checks that an envelope's `from` is the broker-verified sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderCheck {
    /// RabbitMQ: the delivery's validated `user_id` must be the user of `from` in this namespace.
    AmqpUser {
        /// The bus namespace (user names are prefixed with it).
        namespace: String,
    },
    /// NATS: the sender tokens of the subject must be those of `from`.
    NatsSubject,
}

// === impl Principal ===

impl Principal {
    /// The principal allowed to send as `from`; `None` for [`Address::Broadcast`], which is never a sender.
    pub fn for_sender(from: &Address) -> Option<Self> {
        match from {
            Address::Manager => Some(Principal::Manager),
            Address::Component(name) => Some(Principal::Component(name.clone())),
            Address::Client(_) => Some(Principal::Operator),
            Address::Broadcast => None,
        }
    }

    /// The principal whose broker user in `namespace` is `user`; `None` for any other user (e.g. `guest`).
    pub fn from_user(namespace: &str, user: &str) -> Option<Self> {
        let rest = user.strip_prefix(namespace)?.strip_prefix('.')?;
        match rest {
            "manager" => Some(Principal::Manager),
            "operator" => Some(Principal::Operator),
            _ => ComponentName::new(rest.strip_prefix("component.")?)
                .ok()
                .map(Principal::Component),
        }
    }

    /// The one address this principal sends as; `None` for operators, who send as any `client/…`.
    pub fn address(&self) -> Option<Address> {
        match self {
            Principal::Manager => Some(Address::Manager),
            Principal::Component(name) => Some(Address::Component(name.clone())),
            Principal::Operator => None,
        }
    }

    /// The broker user name of this principal in `namespace` (the same on RabbitMQ and NATS).
    pub fn user(&self, namespace: &str) -> String {
        match self {
            Principal::Manager => format!("{namespace}.manager"),
            Principal::Component(name) => format!("{namespace}.component.{name}"),
            Principal::Operator => format!("{namespace}.operator"),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Manager => f.write_str("manager"),
            Principal::Component(name) => write!(f, "component {name}"),
            Principal::Operator => f.write_str("operator"),
        }
    }
}

// === impl SenderCheck ===

impl SenderCheck {
    /// The check for `transport`; `None` for the in-memory bus, which has no broker to vouch for anyone.
    pub fn for_transport(transport: Transport, namespace: &str) -> Option<Self> {
        match transport {
            Transport::Memory => None,
            Transport::Amqp => Some(SenderCheck::AmqpUser {
                namespace: namespace.to_owned(),
            }),
            Transport::Nats => Some(SenderCheck::NatsSubject),
        }
    }

    /// `Ok` if `verified` (what the broker vouches for: the AMQP `user_id`, or the NATS subject's sender tokens)
    /// may send as `from`; otherwise the reason, for the dead-letter record.
    pub fn verify(&self, verified: Option<&str>, from: &Address) -> Result<(), String> {
        let Some(verified) = verified else {
            return Err(format!(
                "sender not verified: envelope claims to be from {from} but the broker attached no identity"
            ));
        };
        let expected = match self {
            SenderCheck::AmqpUser { namespace } => match Principal::for_sender(from) {
                Some(p) => p.user(namespace),
                None => return Err(format!("sender mismatch: {from} is not a valid sender")),
            },
            SenderCheck::NatsSubject => crate::nats::sender_tokens(from),
        };
        if verified == expected {
            Ok(())
        } else {
            Err(format!(
                "sender mismatch: envelope claims to be from {from} but the broker verified {verified:?} \
                 (expected {expected:?})"
            ))
        }
    }
}

/// Refuses, before anything goes to the broker, to publish `envelope` as someone else than the connection's user
/// (when that user is one of this namespace's principals; other users such as a development `guest` are not
/// checked here). The broker and the receiver enforce the same independently; this only turns a certain rejection
/// into an immediate, clear error.
pub(crate) fn may_send(
    transport: Transport,
    namespace: &str,
    user: Option<&str>,
    envelope: &acv_protocol::Envelope,
) -> Result<(), crate::BusError> {
    let Some(me) = user.and_then(|u| Principal::from_user(namespace, u)) else {
        return Ok(());
    };
    if Principal::for_sender(&envelope.from).as_ref() == Some(&me) {
        return Ok(());
    }
    Err(crate::BusError::Publish {
        transport,
        to: envelope.to.to_string(),
        message: format!(
            "this connection is the {me} and may not send as {}",
            envelope.from
        ),
    })
}

/// Escapes a name for a RabbitMQ permission regex. Namespaces and component names are `[a-z0-9-]`, so only the
/// separators need it.
fn re(s: &str) -> String {
    s.replace('.', "\\.")
}

/// RabbitMQ permissions `(configure, write, read)` of `principal` in `namespace` (regexes over exchange and queue
/// names, see [`crate::amqp`] for the topology).
///
/// - a sidecar configures only its own inbox queue (and its server-named broadcast queues `amq.gen-…`), reads only
///   its own queue and the two exchanges it binds to, and writes to the inbox, broadcast and dead-letter exchanges;
/// - the manager administers everything in its namespace (it declares the topology and reads the dead letters);
/// - operators' clients are limited to the `client.…` queues.
///
/// A direct exchange cannot restrict routing keys by user, so a sidecar can still put a message in any inbox; that
/// message carries its own validated `user_id`, and the receiver rejects it unless its `from` matches.
pub fn amqp_permissions(namespace: &str, principal: &Principal) -> (String, String, String) {
    let ns = re(namespace);
    let server_named = "amq\\.gen-.*";
    let exchanges = format!("{ns}\\.inbox|{ns}\\.broadcast");
    match principal {
        Principal::Manager => {
            let all = format!("^({ns}\\..*|{server_named})$");
            (all.clone(), all.clone(), all)
        }
        Principal::Component(name) => {
            let own = format!("{ns}\\.component\\.{}", re(name.as_str()));
            (
                format!("^({own}|{server_named})$"),
                format!("^({exchanges}|{ns}\\.dead-letter|{own}|{server_named})$"),
                format!("^({exchanges}|{own}|{server_named})$"),
            )
        }
        Principal::Operator => {
            let own = format!("{ns}\\.client\\..*");
            (
                format!("^({own}|{server_named})$"),
                format!("^({exchanges}|{ns}\\.dead-letter|{own}|{server_named})$"),
                format!("^({exchanges}|{own}|{server_named})$"),
            )
        }
    }
}

/// NATS permissions `(publish allow, subscribe allow)` of `principal` in `namespace`, subjects as laid out in
/// [`crate::nats`]. Everything not allowed is denied.
///
/// - a sidecar publishes only with its own sender tokens, reaches JetStream only for its own durable consumer (the
///   create subject pins the filter to its own inbox), and receives replies only on its own inbox prefix
///   ([`crate::nats::inbox_prefix`]), so it cannot read another inbox or another connection's replies;
/// - the manager may use the whole JetStream API (it creates the streams and reads the dead letters);
/// - operators' clients have random reply-inbox names, which NATS wildcards cannot match inside a token, so they
///   get the JetStream API too: operator credentials are as powerful as the manager's on NATS (documented in
///   docs/security.md).
pub fn nats_permissions(namespace: &str, principal: &Principal) -> (Vec<String>, Vec<String>) {
    let ns = namespace;
    let user = principal.user(namespace);
    let inbox = format!("{}.>", crate::nats::inbox_prefix(&user));
    let stream = crate::nats::stream_prefix(namespace);
    let broadcast_sub = format!("{ns}.broadcast.>");
    match principal {
        Principal::Component(name) => {
            let me = Address::Component(name.clone());
            let sender = crate::nats::sender_tokens(&me);
            let token = me.inbox_token();
            let durable = token.replace('.', "_");
            let filter = crate::nats::consumer_filter(namespace, &me);
            (
                vec![
                    format!("{ns}.inbox.*.*.{sender}"),
                    format!("{ns}.broadcast.{sender}"),
                    format!("{ns}.dead.{token}"),
                    format!("$JS.API.STREAM.INFO.{stream}_INBOX"),
                    format!("$JS.API.STREAM.INFO.{stream}_DEAD"),
                    format!("$JS.API.CONSUMER.INFO.{stream}_INBOX.{durable}"),
                    format!("$JS.API.CONSUMER.CREATE.{stream}_INBOX.{durable}.{filter}"),
                    format!("$JS.API.CONSUMER.MSG.NEXT.{stream}_INBOX.{durable}"),
                    format!("$JS.ACK.{stream}_INBOX.{durable}.>"),
                ],
                vec![inbox, broadcast_sub],
            )
        }
        Principal::Manager | Principal::Operator => {
            let sender = match principal {
                Principal::Manager => crate::nats::sender_tokens(&Address::Manager),
                _ => "client.*".to_owned(),
            };
            let dead = match principal {
                Principal::Manager => format!("{ns}.dead.manager"),
                _ => format!("{ns}.dead.client.*"),
            };
            (
                vec![
                    format!("{ns}.inbox.*.*.{sender}"),
                    format!("{ns}.broadcast.{sender}"),
                    dead,
                    "$JS.API.>".to_owned(),
                    "$JS.ACK.>".to_owned(),
                ],
                vec![inbox, broadcast_sub],
            )
        }
    }
}

/// A nats-server `authorization { users = [...] }` block for `users` (principal and password) in `namespace`.
pub fn nats_authorization(namespace: &str, users: &[(Principal, String)]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let list = |v: &[String]| v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
    let mut out = String::from("authorization {\n  users = [\n");
    for (principal, password) in users {
        let (publish, subscribe) = nats_permissions(namespace, principal);
        out.push_str(&format!(
            "    {{ user: {}, password: {}, permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }} }}\n",
            quote(&principal.user(namespace)),
            quote(password),
            list(&publish),
            list(&subscribe),
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ComponentName {
        ComponentName::new(s).unwrap()
    }

    #[test]
    fn users_follow_the_address() {
        assert_eq!(Principal::Manager.user("acv"), "acv.manager");
        assert_eq!(
            Principal::for_sender(&Address::Component(name("front-end")))
                .unwrap()
                .user("t1"),
            "t1.component.front-end"
        );
        assert_eq!(
            Principal::for_sender(&Address::Client(name("cli-1"))).unwrap(),
            Principal::Operator
        );
        assert!(Principal::for_sender(&Address::Broadcast).is_none());
        assert_eq!(
            Principal::from_user("t1", "t1.component.front-end"),
            Some(Principal::Component(name("front-end")))
        );
        assert_eq!(
            Principal::from_user("t1", "t1.operator"),
            Some(Principal::Operator)
        );
        assert_eq!(Principal::from_user("t1", "t2.manager"), None);
        assert_eq!(Principal::from_user("t1", "guest"), None);
        assert_eq!(Principal::from_user("t1", "t1.component.Bad"), None);
    }

    #[test]
    fn amqp_check_compares_user_id_with_the_sender() {
        let check = SenderCheck::for_transport(Transport::Amqp, "acv").unwrap();
        let cat = Address::Component(name("catalogue"));
        assert!(check.verify(Some("acv.component.catalogue"), &cat).is_ok());
        let forged = check.verify(Some("acv.component.front-end"), &Address::Manager);
        assert!(forged.unwrap_err().contains("sender mismatch"));
        assert!(check.verify(None, &cat).unwrap_err().contains("not verified"));
        assert!(
            check
                .verify(Some("acv.operator"), &Address::Client(name("cli-9")))
                .is_ok()
        );
        assert!(SenderCheck::for_transport(Transport::Memory, "acv").is_none());
    }

    #[test]
    fn nats_check_compares_subject_tokens() {
        let check = SenderCheck::NatsSubject;
        assert!(check.verify(Some("manager._"), &Address::Manager).is_ok());
        assert!(
            check
                .verify(Some("component.catalogue"), &Address::Manager)
                .is_err()
        );
    }

    #[test]
    fn amqp_permissions_confine_a_sidecar_to_its_queue() {
        let (configure, write, read) = amqp_permissions("t-1", &Principal::Component(name("catalogue")));
        assert_eq!(configure, "^(t-1\\.component\\.catalogue|amq\\.gen-.*)$");
        assert!(write.contains("t-1\\.inbox") && !write.contains("front-end"));
        assert!(
            !read.contains("dead-letter"),
            "only the manager reads dead letters: {read}"
        );
    }

    #[test]
    fn nats_config_lists_every_user() {
        let conf = nats_authorization(
            "acv",
            &[
                (Principal::Manager, "m".into()),
                (Principal::Component(name("catalogue")), "c\"q".into()),
            ],
        );
        assert!(conf.contains("user: \"acv.manager\""), "{conf}");
        assert!(conf.contains("\"acv.inbox.*.*.component.catalogue\""), "{conf}");
        assert!(conf.contains("password: \"c\\\"q\""), "{conf}");
        assert!(
            conf.contains("$JS.API.CONSUMER.MSG.NEXT.ACV_INBOX.component_catalogue"),
            "{conf}"
        );
    }
}

//! Mechanism 3: sidecars help each other directly over mutual TLS, with no manager in the loop.
//!
//! - [`server`]: the HTTPS peer API (hyper + rustls); a client certificate from the CA is required and is the
//!   caller's identity.
//! - [`service`]: the rules: identity must match the request, hop limit, duplicate request ids, rate limit per peer;
//!   read-only answers; requests for action handled by the own planner under the own safety mode.
//! - [`client`]: `acv.ask_peer` — the [`crate::caps::Peers`] implementation.
//! - [`directory`]: peer URLs learned from registrations and heartbeats on the bus broadcast.
//!
//! Certificates and rustls configs come from [`acv_pki`]. See docs/peers.md.

pub mod client;
pub mod directory;
pub mod server;
pub mod service;

pub use client::{PeerClient, PeerError};
pub use directory::PeerDirectory;
pub use service::{Maintainer, PeerLimits, PeerService, SerialHandler, WorkLock};

//! The acv manager (mechanism 2): takes declarative goals from people, decomposes them into per-component
//! subtasks, assigns them to sidecars over the bus, and decides by its own measurements whether a goal is achieved,
//! re-planning up to a round limit. Goals, subtasks and events are durable (SQLite or PostgreSQL), so a manager
//! killed mid-goal resumes it.
//!
//! # Layout
//! - [`engine`]: the goal lifecycle (plan, assign with retries and deadlines, verify, re-plan), bus listener.
//! - [`store`]: the [`store::Store`] trait and its SQLite/PostgreSQL implementation with migrations.
//! - [`measure`]: how the manager measures components (the local runtime's API).
//! - [`api`]: the HTTP JSON + SSE API `acvctl` speaks.
//! - [`episodes`]: episodes (steps, calls, report, time to detect/mitigate) derived from the audit trail.
//! - [`dashboard`]: the operator dashboard on the API's port, and the SLO series it plots.
//! - [`registry`]: which sidecars exist and whether they are live, from their register and heartbeat broadcasts.
//! - [`k8s`]: on Kubernetes, the Goal controller and the sidecar-injection webhook (`acv_kube`), off unless asked.
//! - [`client`]: send a task to a component directly over the bus and wait for its report (`acv-manager task send`).
#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod dashboard;
pub mod engine;
pub mod episodes;
pub mod k8s;
pub mod measure;
pub mod registry;
pub mod store;

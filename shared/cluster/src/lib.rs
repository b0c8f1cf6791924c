//! Cluster backends scoped to one component. Filled by the local runtime issue (local runtime, Kubernetes).
#![forbid(unsafe_code)]

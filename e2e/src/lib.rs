//! Testbed, load, chaos and experiment harness. Filled by the local runtime and evaluation issues.

//! Runs generated Python inside a wasmtime sandbox. Filled by the sandbox issue.
#![forbid(unsafe_code)]

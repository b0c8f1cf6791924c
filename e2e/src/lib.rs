//! Testbed, load, chaos and experiment harness.
//!
//! # Layout
//! - [`shop`]: the testbed shop (front-end → catalogue, carts, orders → payment, shipping; user) as one binary,
//!   `acv-shop <service>`, with Sock Shop's `request_duration_seconds` histogram, `/health` and a version switch.
//! - [`stress`]: the stressor behind the local runtime's CPU/memory stress faults (`acv-shop stress`).
//! - [`testbed`]: the shop's runtime spec (compiled-in `shop.yaml`, ephemeral ports, fast timings).
//! - [`runfile`]: the `[FILE] [NAME=VALUE ...]` arguments of `acv-local` and `acv-all-in-one`.
//! - [`load`]: the open-loop load generator (constant, steps, ramp; presets light/moderate/heavy/increase).
//! - [`experiment`]: the L1–L5 experiment harness behind `acv-experiment`.
#![forbid(unsafe_code)]

pub mod experiment;
pub mod load;
pub mod runfile;
pub mod shop;
pub mod stress;
pub mod testbed;

/// Exits the process when its parent goes away, so a killed supervisor never leaves services or stressors behind.
pub fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(300));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(0);
            }
        }
    });
}

//! The experiment harness behind `acv-experiment`: the paper's L1–L5 evaluation on the dataset's cases and the
//! manager tasks, on the local runtime shop, scored by oracles that measure the system.
//!
//! # Layout
//! - [`case`]: the case files (`e2e/cases/*.yaml`) and their schema; [`acv`]: the original ACV dataset files.
//! - [`episode`]: one episode (fresh shop, setup, load, fault, arm, ask, measurements, scores); [`agents`]: the
//!   sidecars and the manager of the agent arm; [`baseline`]: the HPA-style autoscaler and Flagger-style rollback.
//! - [`probe`]: the harness's own measurements (samples, SLO story, actions seen).
//! - [`oracle`]: the per-level oracles.
//! - [`runner`]: cases × runs × arms with progress and Ctrl-C; [`summary`]: results.json and summary.md;
//!   [`timeline`]: the SVG timelines.

pub mod acv;
pub mod agents;
pub mod baseline;
pub mod case;
pub mod episode;
pub mod oracle;
pub mod probe;
pub mod runner;
pub mod summary;
pub mod timeline;

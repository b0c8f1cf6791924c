//! The list of host calls, and which of them mutate, has one source (`acv_protocol::HOST_CALLS` /
//! `MUTATING_CALLS`); these tests check that the typed calls, the WIT interface and the guest's Python module
//! agree with it.

use acv_protocol::{HOST_CALLS, MUTATING_CALLS, ReportStatus, ResourceLimits};
use acv_sandbox::HostCall;

fn every_call() -> Vec<HostCall> {
    vec![
        HostCall::Status,
        HostCall::Metrics { window_secs: 60 },
        HostCall::Logs { tail: 10 },
        HostCall::History,
        HostCall::Scale { replicas: 2 },
        HostCall::Restart,
        HostCall::SetImage { image: "x:1".into() },
        HostCall::SetEnv {
            key: "K".into(),
            value: "v".into(),
        },
        HostCall::SetResources {
            limits: ResourceLimits {
                cpu_millis: 100,
                memory_mib: 64,
            },
        },
        HostCall::Rollback,
        HostCall::Report {
            status: ReportStatus::Response,
            message: "m".into(),
        },
        HostCall::AskPeer {
            peer: "payment".parse().unwrap(),
            question: "q".into(),
        },
    ]
}

#[test]
fn typed_calls_match_the_list() {
    let names: Vec<&str> = every_call().iter().map(HostCall::name).collect();
    assert_eq!(names, HOST_CALLS);
    let mutating: Vec<&str> = every_call()
        .iter()
        .filter(|c| c.is_mutating())
        .map(HostCall::name)
        .collect();
    assert_eq!(mutating, MUTATING_CALLS);
}

fn read(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn wit_interface_matches_the_list() {
    let wit = read("wit/world.wit");
    // Only the `host` interface (the world below it exports `run`).
    let start = wit.find("interface host {").expect("interface host");
    let end = start + wit[start..].find("\n}").expect("end of interface host");
    let wit = &wit[start..end];
    let mut calls = Vec::new();
    let mut mutating = Vec::new();
    let mut doc = String::new();
    for line in wit.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("///") {
            doc.push_str(d);
            continue;
        }
        if let Some((name, _)) = line.split_once(": func(") {
            let name = name.replace('-', "_");
            if name != "own_component" {
                if doc.trim_start().starts_with("Mutating") {
                    mutating.push(name.clone());
                }
                calls.push(name);
            }
        }
        doc.clear();
    }
    assert_eq!(calls, HOST_CALLS);
    assert_eq!(mutating, MUTATING_CALLS);
}

#[test]
fn guest_module_matches_the_list() {
    let py = read("guest/acv.py");
    let mut calls = Vec::new();
    let mut mutating = Vec::new();
    let mut current: Option<String> = None;
    for line in py.lines() {
        if let Some(rest) = line.strip_prefix("def ") {
            let name = rest.split('(').next().unwrap_or_default().to_owned();
            current = (!name.starts_with('_') && name != "component").then_some(name);
            if let Some(n) = &current {
                calls.push(n.clone());
            }
        } else if let Some(n) = &current
            && line.trim_start().starts_with("\"\"\"")
        {
            if line.contains("Mutating.") {
                mutating.push(n.clone());
            }
            current = None;
        }
    }
    assert_eq!(calls, HOST_CALLS);
    assert_eq!(mutating, MUTATING_CALLS);
}

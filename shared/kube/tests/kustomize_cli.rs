//! The real kustomize against this repo's kustomize subset (`support/kustomize.rs`, which the other manifest tests
//! render with): every kustomization under `manifests/` rendered by `kubectl kustomize` (or `kustomize build`) must
//! give the same objects, field for field. Skipped, saying so, when neither tool is installed.

#[path = "support/kustomize.rs"]
mod kustomize;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

const DIRS: &[&str] = &[
    "base",
    "overlays/nats",
    "overlays/rabbitmq",
    "shop",
    "chaos",
    "examples",
];

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

/// The installed renderer: `kubectl kustomize DIR` or `kustomize build DIR`.
fn tool() -> Option<Vec<&'static str>> {
    let works = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("kubectl", "version") || works("kubectl", "help") {
        Some(vec!["kubectl", "kustomize"])
    } else if works("kustomize", "version") {
        Some(vec!["kustomize", "build"])
    } else {
        None
    }
}

/// Objects by (kind, namespace, name).
fn keyed(values: impl IntoIterator<Item = Value>) -> BTreeMap<(String, String, String), Value> {
    values
        .into_iter()
        .map(|v| {
            let s = |p: &str| {
                v.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            ((s("/kind"), s("/metadata/namespace"), s("/metadata/name")), v)
        })
        .collect()
}

fn kustomize(tool: &[&str], dir: &Path) -> Vec<Value> {
    let out = Command::new(tool[0])
        .args(&tool[1..])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("{tool:?}: {e}"));
    assert!(
        out.status.success(),
        "{tool:?} {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|doc| Value::deserialize(doc).expect("kustomize prints YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The path of the first difference between `a` and `b`; numbers compare by value (kustomize prints `0.0` as `0`).
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64() != y.as_f64()).then(|| format!("{at}: {x} vs {y}"))
        }
        (Value::Object(x), Value::Object(y)) => {
            if x.keys().ne(y.keys()) {
                return Some(format!(
                    "{at}: keys {:?} vs {:?}",
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>()
                ));
            }
            x.iter()
                .find_map(|(k, v)| first_difference(v, &y[k], format!("{at}/{k}")))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{at}/{i}"))),
        _ => (a != b).then(|| format!("{at}: {a} vs {b}")),
    }
}

#[test]
fn first_difference_finds_what_differs_and_ignores_number_spelling() {
    let a = serde_json::json!({ "spec": { "minimum": 0.0, "ports": [{ "port": 80 }] } });
    let b = serde_json::json!({ "spec": { "minimum": 0, "ports": [{ "port": 80 }] } });
    assert_eq!(first_difference(&a, &b, String::new()), None);
    let c = serde_json::json!({ "spec": { "minimum": 0, "ports": [{ "port": 81 }] } });
    assert_eq!(
        first_difference(&a, &c, String::new()).as_deref(),
        Some("/spec/ports/0/port: 80 vs 81")
    );
}

#[test]
fn kustomize_renders_every_kustomization_as_the_tests_do() {
    let Some(tool) = tool() else {
        // Past the harness's capture, so that a skipped check is seen.
        let msg = "SKIPPED: neither kubectl nor kustomize is installed; the manifests were rendered only by the \
                   tests' kustomize subset";
        eprintln!("{msg}");
        return;
    };
    for dir in DIRS {
        let path = manifests().join(dir);
        let ours = keyed(
            kustomize::render(&path)
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .into_iter()
                .map(|o| o.value),
        );
        let theirs = keyed(kustomize(&tool, &path));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{dir}: the same objects"
        );
        for (key, value) in &theirs {
            if let Some(at) = first_difference(&ours[key], value, String::new()) {
                panic!("{dir}: {key:?} differs at {at}");
            }
        }
        eprintln!("{dir}: {} objects, the same as {}", theirs.len(), tool.join(" "));
    }
}

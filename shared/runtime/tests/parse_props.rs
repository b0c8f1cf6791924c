//! Property tests over what the local runtime parses from outside: the runtime file (YAML with `${VAR}`
//! expansion), fault bodies of the control API, and Prometheus text scraped from services. Any input gives a
//! value or a typed error, never a panic. Bounded cases keep `make test` fast.

use std::collections::BTreeMap;

use acv_runtime::{Fault, RuntimeSpec, Selector, prom};
use proptest::prelude::*;

const SHOP: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../e2e/shop.yaml"));

fn vars() -> BTreeMap<String, String> {
    [("SHOP_BIN".to_owned(), "/bin/true".to_owned())]
        .into_iter()
        .collect()
}

/// One edit of the shop file: drop, duplicate or replace a line, or splice text into it.
#[derive(Debug, Clone)]
enum Edit {
    Drop(usize),
    Duplicate(usize),
    Replace(usize, String),
    Splice(usize, usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let text = prop_oneof![
        ".{0,24}",
        Just("${".to_owned()),
        Just("${X:-".to_owned()),
        Just("port: -1".to_owned()),
        Just("port: 99999999999".to_owned()),
        Just("max_replicas: 0".to_owned()),
        Just("  - name: catalogue".to_owned()),
        Just("version: \"nope\"".to_owned()),
        Just("command: []".to_owned()),
        Just("limits: { cpu_millis: -5, memory_mib: 0 }".to_owned()),
        Just("\t".to_owned()),
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::Drop),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), text.clone()).prop_map(|(i, t)| Edit::Replace(i, t)),
        (any::<usize>(), any::<usize>(), text).prop_map(|(i, at, t)| Edit::Splice(i, at, t)),
    ]
}

fn apply(edits: &[Edit]) -> String {
    let mut lines: Vec<String> = SHOP.lines().map(str::to_owned).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match e {
            Edit::Drop(i) => {
                lines.remove(i % n);
            }
            Edit::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::Replace(i, t) => lines[i % n] = t.clone(),
            Edit::Splice(i, at, t) => {
                let l = &mut lines[i % n];
                let mut cut = at % (l.len() + 1);
                while !l.is_char_boundary(cut) {
                    cut -= 1;
                }
                l.insert_str(cut, t);
            }
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn runtime_file_never_panics_on_text(text in ".{0,300}") {
        let _outcome = RuntimeSpec::parse(&text, &vars());
    }

    #[test]
    fn runtime_file_never_panics_on_edited_shop(edits in prop::collection::vec(edit(), 1..4)) {
        let _outcome = RuntimeSpec::parse(&apply(&edits), &vars());
    }

    #[test]
    fn fault_bodies_never_panic(text in ".{0,120}", kind in prop_oneof![
        Just("cpu_stress"), Just("latency"), Just("kill"), Just("crash"), Just("x")], n in any::<i64>()) {
        let _outcome = serde_json::from_str::<Fault>(&text);
        let _outcome = serde_json::from_str::<Selector>(&text);
        let body = format!(r#"{{"kind":"{kind}","workers":{n},"load_percent":{n},"ms":{n}}}"#);
        let _outcome = serde_json::from_str::<Fault>(&body);
        let _outcome = serde_json::from_str::<Selector>(&format!(r#"{{"mode":"fixed-percent","value":{n}}}"#));
    }

    #[test]
    fn prometheus_text_never_panics(text in "([a-z_]{1,8}(\\{[a-z]{1,3}=\"[^\"]{0,4}\"\\})? ?-?[0-9.eE+]{0,6}( [0-9]{0,4})?\n|# .{0,10}\n|.{0,10}\n){0,8}") {
        let _outcome = prom::parse(&text);
    }
}

#[test]
fn the_unedited_shop_parses() {
    RuntimeSpec::parse(SHOP, &vars()).unwrap();
}

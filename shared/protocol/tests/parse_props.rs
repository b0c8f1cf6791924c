//! Property tests over everything the protocol parses from outside: bus envelopes, addresses, component names and
//! the Goal resource (the body of the manager API's `POST /goals` and of `acvctl goal apply -f`). Whatever the
//! input, parsing returns a value or a typed error and never panics. Cases are bounded so `make test` stays fast.

use acv_protocol::{Address, ComponentName, Envelope, GoalResource};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Arbitrary JSON, a few levels deep, with keys that the envelope and goal shapes use so that deep paths get hit.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("v".to_owned()),
        Just("id".to_owned()),
        Just("from".to_owned()),
        Just("to".to_owned()),
        Just("kind".to_owned()),
        Just("body".to_owned()),
        Just("spec".to_owned()),
        Just("metadata".to_owned()),
        Just("objectives".to_owned()),
        Just("component".to_owned()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("manager"),
            Just("broadcast"),
            Just("component/catalogue"),
            Just("client/x"),
            Just("task"),
            Just("report"),
            Just("Goal"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn valid_envelope() -> Value {
    json!({"v": 1, "id": "e1", "from": "manager", "to": "component/catalogue", "sent_at_ms": 1,
        "kind": "task", "body": {"task_id": "t1", "component": "catalogue",
        "spec": {"type": "imperative", "text": "scale to 2"}, "mechanism": "solo"}})
}

/// Replaces the value at a random path of `cur` with `with` (stopping early at a leaf).
fn mutate(cur: &mut Value, path: &[usize], with: Value) {
    let Some((&i, rest)) = path.split_first() else {
        *cur = with;
        return;
    };
    match cur {
        Value::Object(m) if !m.is_empty() => {
            let key = m.keys().nth(i % m.len()).cloned();
            match key.and_then(|k| m.get_mut(&k)) {
                Some(next) => mutate(next, rest, with),
                None => *cur = with,
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let n = a.len();
            mutate(&mut a[i % n], rest, with);
        }
        _ => *cur = with,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn envelope_decode_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _outcome = Envelope::decode(&bytes);
    }

    #[test]
    fn envelope_decode_never_panics_on_json(v in any_json()) {
        let _outcome = Envelope::decode(v.to_string().as_bytes());
    }

    #[test]
    fn envelope_decode_never_panics_on_mutated_envelopes(
        path in prop::collection::vec(any::<usize>(), 0..5),
        with in any_json(),
    ) {
        let mut v = valid_envelope();
        mutate(&mut v, &path, with);
        if let Ok(env) = Envelope::decode(v.to_string().as_bytes()) {
            // Whatever decodes re-encodes and decodes to the same envelope.
            let again = Envelope::decode(&env.encode()).expect("a decoded envelope re-decodes");
            prop_assert_eq!(again, env);
        }
    }

    #[test]
    fn addresses_and_names_never_panic(s in ".{0,80}") {
        if let Ok(a) = s.parse::<Address>() {
            prop_assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
        }
        if let Ok(n) = ComponentName::new(s.clone()) {
            prop_assert_eq!(n.as_str(), s.as_str());
        }
    }

    #[test]
    fn goal_resources_parse_and_validate_without_panics(v in any_json()) {
        if let Ok(goal) = serde_json::from_value::<GoalResource>(v.clone()) {
            let _outcome = goal.validate();
        }
        let _outcome = serde_yaml::from_str::<GoalResource>(&v.to_string());
    }
}

#[test]
fn the_mutation_base_is_valid() {
    assert!(Envelope::decode(valid_envelope().to_string().as_bytes()).is_ok());
}

//! Property tests over what the planners parse from outside: LLM answers (plans: JSON in any wrapping, with any
//! field values), observations printed by step programs, task and goal text read by the rules planner, and the
//! LLM config file. Any input gives a value or a typed error (the text handed back to the model), never a panic.
//! Bounded cases keep `make test` fast.

use acv_llm::{
    LlmConfig, MaintainerContext,
    planner::{
        llm::{extract_json, validate_plan},
        rules::parse::{
            components_in, parse_goal_objectives, parse_intent, parse_objectives_text, parse_task,
        },
        state::parse_observation,
    },
};
use acv_protocol::{ComponentName, TaskSpec};
use proptest::prelude::*;

fn ctx() -> MaintainerContext {
    MaintainerContext::for_task(
        ComponentName::new("catalogue").unwrap(),
        "t-1",
        TaskSpec::Imperative {
            text: "scale to 3".into(),
        },
    )
}

fn known() -> Vec<ComponentName> {
    ["front-end", "catalogue", "carts"]
        .into_iter()
        .map(|n| ComponentName::new(n).unwrap())
        .collect()
}

/// A plan-shaped answer with arbitrary field values, optionally wrapped in prose or a fence.
fn answer() -> impl Strategy<Value = String> {
    let s = ".{0,40}";
    let step = (s, s).prop_map(|(d, p)| serde_json::json!({"description": d, "program": p}));
    let plan = (
        proptest::option::of(s),
        prop::collection::vec(step, 0..12),
        any::<bool>(),
        proptest::option::of((
            prop_oneof![Just("RESPONSE".to_owned()), Just("ISSUE".to_owned()), s.boxed()],
            s,
        )),
    )
        .prop_map(|(thought, steps, done, report)| {
            let mut v = serde_json::json!({"thought": thought, "steps": steps, "done": done});
            if let Some((status, message)) = report {
                v["report"] = serde_json::json!({"status": status, "message": message});
            }
            v.to_string()
        });
    (plan, ".{0,20}", ".{0,20}", 0..4u8).prop_map(|(json, pre, post, wrap)| match wrap {
        0 => json,
        1 => format!("{pre}\n```json\n{json}\n```\n{post}"),
        2 => format!("{pre}{json}{post}"),
        _ => {
            let mut cut = json.len() / 2;
            while !json.is_char_boundary(cut) {
                cut -= 1;
            }
            json[..cut].to_owned()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn plans_from_any_text_never_panic(text in ".{0,400}") {
        let _outcome = extract_json(&text);
        let _outcome = validate_plan(&text, &ctx());
    }

    #[test]
    fn plan_shaped_answers_never_panic(text in answer()) {
        if let Some(json) = extract_json(&text) {
            prop_assert!(text.contains(json));
        }
        let _outcome = validate_plan(&text, &ctx());
    }

    #[test]
    fn observations_never_panic(text in ".{0,200}", json in "\\{.{0,80}\\}") {
        let _outcome = parse_observation(&text);
        let _outcome = parse_observation(&format!("noise\nACV_OBSERVATION {json}\n{text}"));
    }

    #[test]
    fn task_and_goal_text_never_panic(text in ".{0,200}") {
        let own = ComponentName::new("catalogue").unwrap();
        let _outcome = parse_task(&text, &own);
        let _outcome = parse_intent(&text);
        let _outcome = parse_objectives_text(&text);
        let _outcome = components_in(&text, &known());
        let _outcome = parse_goal_objectives(&text, &known());
    }

    #[test]
    fn task_text_with_numbers_and_units_never_panics(
        verb in prop_oneof![Just("scale"), Just("set"), Just("limit"), Just("roll back"), Just("increase")],
        n in any::<i64>(),
        unit in prop_oneof![Just(""), Just("m"), Just("Mi"), Just("Gi"), Just("%"), Just("ms"), Just(" replicas")],
        tail in ".{0,30}",
    ) {
        let own = ComponentName::new("catalogue").unwrap();
        let text = format!("{verb} catalogue to {n}{unit} {tail}");
        let _outcome = parse_task(&text, &own);
        let _outcome = parse_objectives_text(&format!("p95 latency below {n}{unit} and error rate under {n}{unit}"));
    }

    #[test]
    fn llm_config_files_never_panic(text in ".{0,200}") {
        let _outcome = LlmConfig::parse_file(&text);
    }
}

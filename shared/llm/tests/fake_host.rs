//! The Python test fake (`support/fake_acv.py`) follows the one list of host calls: it offers every call in
//! `acv_protocol::HOST_CALLS` and, in observe mode, refuses exactly `acv_protocol::MUTATING_CALLS`.

mod support;

use acv_protocol::{HOST_CALLS, is_mutating_call};
use serde_json::json;

fn call_of(name: &str) -> &'static str {
    match name {
        "status" => "acv.status()",
        "metrics" => "acv.metrics(30)",
        "logs" => "acv.logs(5)",
        "history" => "acv.history()",
        "scale" => "acv.scale(3)",
        "restart" => "acv.restart()",
        "set_image" => "acv.set_image('weaveworksdemos/catalogue:0.3.5')",
        "set_env" => "acv.set_env('K', 'v')",
        "set_resources" => "acv.set_resources(300, 256)",
        "rollback" => "acv.rollback()",
        "report" => "acv.report('RESPONSE', 'ok')",
        "ask_peer" => "acv.ask_peer('payment', 'up?')",
        other => panic!("no example call for host call {other}: add one here"),
    }
}

#[test]
fn the_fake_refuses_exactly_the_mutating_calls_in_observe_mode() {
    for mode in ["observe", "autonomous"] {
        let mut state = support::healthy_state();
        state["mode"] = json!(mode);
        for name in HOST_CALLS {
            let program = format!(
                "import acv\ntry:\n    {}\n    print('ran')\nexcept acv.HostError as e:\n    print(e.kind)\n",
                call_of(name)
            );
            let run = support::run_fake(&program, &state);
            assert!(run.error.is_none(), "{name}: {:?}", run.error);
            let refused = mode == "observe" && is_mutating_call(name);
            let expected = if refused { "refused" } else { "ran" };
            assert_eq!(run.stdout.trim(), expected, "{name} in {mode} mode");
            assert_eq!(
                run.mutated(),
                !refused && is_mutating_call(name),
                "{name} in {mode} mode"
            );
        }
    }
}

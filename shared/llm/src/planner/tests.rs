use acv_protocol::{ComponentName, StepOutcome, StepRecord, TaskSpec};

use super::*;

fn record(program: &str, output: &str, mutated: bool) -> StepRecord {
    StepRecord {
        index: 1,
        description: "d".into(),
        program: program.into(),
        outcome: StepOutcome::Ok,
        output: output.into(),
        mutated,
    }
}

#[test]
fn observations_go_stale_after_a_mutation() {
    let c = ComponentName::new("catalogue").unwrap();
    let mut ctx = MaintainerContext::for_task(c, "t", TaskSpec::Imperative { text: "x".into() });
    assert!(ctx.latest_observation().is_none());
    ctx.steps.push(record(
        "import acv\nprint(1)",
        "noise\nACV_OBSERVATION {\"history\": []}\n",
        false,
    ));
    assert_eq!(ctx.latest_observation(), Some(Observation::default()));
    // The record decides, not the program text: a refused scale changed nothing ...
    ctx.steps
        .push(record("import acv\nacv.scale(3)", "refused", false));
    assert_eq!(ctx.latest_observation(), Some(Observation::default()));
    // ... and a step that ran a mutating call makes earlier observations stale.
    ctx.steps.push(record("import acv\nacv.scale(3)", "scaled", true));
    assert!(ctx.latest_observation().is_none(), "observed before the scale");
    ctx.observation = Some(Observation::default());
    assert!(
        ctx.latest_observation().is_some(),
        "the caller's observation is fresh by contract"
    );
    assert!(parse_observation("ACV_OBSERVATION {not json").is_none());
}

#[test]
fn budget_check() {
    let c = ComponentName::new("catalogue").unwrap();
    let mut ctx = MaintainerContext::for_task(c, "t", TaskSpec::Imperative { text: "x".into() });
    ctx.max_turns = 2;
    ctx.turn = 2;
    assert!(ctx.check_budget().is_ok());
    ctx.turn = 3;
    let e = ctx.check_budget().unwrap_err();
    assert!(
        matches!(
            e,
            PlanError::TurnBudgetExhausted {
                turns: 2,
                max_turns: 2
            }
        ),
        "{e}"
    );
}

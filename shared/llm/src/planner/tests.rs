use acv_protocol::{ComponentName, StepOutcome, StepRecord, TaskSpec};

use super::*;

fn record(program: &str, output: &str, mutated: bool) -> TaskStep {
    TaskStep::from(StepRecord {
        index: 1,
        description: "d".into(),
        program: program.into(),
        outcome: StepOutcome::Ok,
        output: output.into(),
        mutated,
    })
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
fn observations_are_read_once_into_types() {
    assert_eq!(read_observation("no marker here\n"), Ok(None));
    assert_eq!(
        read_observation("ACV_OBSERVATION {\"history\": []}\nACV_OBSERVATION {\"status\": null}\n"),
        Ok(Some(Observation::default())),
        "the last line wins"
    );
    let bad = read_observation("ACV_OBSERVATION {\"history\": 3}").unwrap_err();
    assert!(bad.to_string().contains("not a valid observation"), "{bad}");
    let step = record("import acv", "ACV_OBSERVATION [1, 2]", false);
    assert!(
        matches!(step.observation, Some(StepObservation::Unreadable { .. })),
        "{:?}",
        step.observation
    );
    let planned = PlannedStep {
        description: "look".into(),
        program: "import acv".into(),
        purpose: Some(StepPurpose::Observe),
    };
    let step = TaskStep::ran(record("import acv", "", false).record, &planned);
    assert_eq!(step.purpose, Some(StepPurpose::Observe));
    assert_eq!(step.observation, None);
}

#[test]
fn task_steps_serialise_flat_and_read_old_records() {
    let mut step = record("import acv", "ACV_OBSERVATION {}", false);
    step.purpose = Some(StepPurpose::Remedy {
        remedy: Remedy::ScaleOut,
    });
    let json = serde_json::to_value(&step).unwrap();
    assert_eq!(json["description"], "d");
    assert_eq!(json["purpose"]["kind"], "remedy");
    assert_eq!(json["purpose"]["remedy"], "scale_out");
    assert_eq!(json["observation"]["kind"], "read");
    let back: TaskStep = serde_json::from_value(json).unwrap();
    assert_eq!(back, step);
    // A plain StepRecord (what older contexts hold) reads as a step without metadata.
    let old = serde_json::json!({"index": 1, "description": "d", "outcome": "ok"});
    let back: TaskStep = serde_json::from_value(old).unwrap();
    assert_eq!(back.purpose, None);
    assert_eq!(back.record.index, 1);
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

#[test]
fn llm_plans_may_carry_a_validated_diagnosis() {
    use acv_protocol::RootCause;

    use super::llm::validate_plan;
    let ctx = MaintainerContext::for_task(
        ComponentName::new("front-end").unwrap(),
        "t1",
        acv_protocol::TaskSpec::Imperative { text: "x".into() },
    );
    let with = |d: serde_json::Value| {
        serde_json::json!({"done": true, "report": {"status": "ISSUE", "message": "m"}, "diagnosis": d})
            .to_string()
    };
    let plan = validate_plan(
        &with(serde_json::json!({"cause": "downstream", "component": "catalogue", "summary": "slow calls"})),
        &ctx,
    )
    .unwrap();
    let d = plan.diagnosis.unwrap();
    assert_eq!(
        (d.cause, d.component.unwrap().as_str()),
        (RootCause::Downstream, "catalogue")
    );
    assert_eq!(d.summary, "slow calls");
    let no_diagnosis = serde_json::json!({"done": true, "report": {"status": "ISSUE", "message": "m"}});
    assert_eq!(
        validate_plan(&no_diagnosis.to_string(), &ctx).unwrap().diagnosis,
        None
    );
    // The model gets the problem back: an unknown cause, a downstream cause without a component, a bad name.
    let e = validate_plan(&with(serde_json::json!({"cause": "cosmic_rays"})), &ctx).unwrap_err();
    assert!(e.contains("cosmic_rays") && e.contains("downstream"), "{e}");
    let e = validate_plan(&with(serde_json::json!({"cause": "downstream"})), &ctx).unwrap_err();
    assert!(e.contains("must name the component"), "{e}");
    let e = validate_plan(
        &with(serde_json::json!({"cause": "downstream", "component": "Not A Name"})),
        &ctx,
    )
    .unwrap_err();
    assert!(e.contains("not a component name"), "{e}");
}

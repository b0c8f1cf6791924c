use super::*;
use crate::{
    Comparison, Evidence, Goal, Mechanism, Objective, ReportStatus, SloMetric, StepOutcome, StepRecord,
    TaskSpec, Violation,
};

fn name(s: &str) -> ComponentName {
    ComponentName::new(s).unwrap()
}

fn samples() -> Vec<Envelope> {
    let cat = name("catalogue");
    let task = Body::Task(TaskBody {
        task_id: "t-1".into(),
        component: cat.clone(),
        spec: TaskSpec::Imperative {
            text: "Scale to 3 replicas".into(),
        },
        mechanism: Mechanism::Solo,
    });
    let objective = Objective {
        component: cat.clone(),
        metric: SloMetric::P99LatencyMs,
        comparison: Comparison::Below,
        threshold: 300.0,
    };
    let goal = Body::Task(TaskBody {
        task_id: "t-2".into(),
        component: cat.clone(),
        spec: TaskSpec::Declarative {
            goal: Goal {
                text: "P99 under 300 ms".into(),
                objectives: vec![objective.clone()],
            },
        },
        mechanism: Mechanism::ManagerLed,
    });
    let report = Body::Report(ReportBody {
        diagnosis: None,
        task_id: "t-1".into(),
        component: cat.clone(),
        status: ReportStatus::Response,
        message: "scaled".into(),
        evidence: vec![Evidence {
            name: "ready".into(),
            value: serde_json::json!(3),
        }],
        steps: vec![StepRecord {
            index: 1,
            description: "scale".into(),
            program: "acv.scale(3)".into(),
            outcome: StepOutcome::Ok,
            output: "".into(),
            mutated: true,
        }],
    });
    let issue = Body::Issue(IssueBody {
        diagnosis: None,
        component: cat.clone(),
        message: "slow".into(),
        violations: vec![Violation {
            objective,
            measured: Some(512.5),
        }],
    });
    let hb = Body::Heartbeat(Heartbeat {
        component: cat.clone(),
        seq: 7,
        healthy: Some(true),
        peer_url: Some("https://127.0.0.1:9443".into()),
        planner: None,
        safety: None,
    });
    let reg = Body::Register(Registration {
        component: cat.clone(),
        peer_url: Some("https://127.0.0.1:9443".into()),
        planner: "rules".into(),
        version: "0.1.0".into(),
        safety: Some(crate::SafetyMode::Autonomous),
    });
    [task, goal, report, issue, hb, reg]
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            Envelope::new(
                format!("m-{i}"),
                Address::Client(name("cli-1")),
                Address::Component(cat.clone()),
                1_700_000_000_000,
                body,
            )
            .with_correlation("c-1")
            .with_deadline_ms(1_700_000_060_000)
        })
        .collect()
}

#[test]
fn every_kind_round_trips() {
    for env in samples() {
        let bytes = env.encode();
        let back = Envelope::decode(&bytes).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.kind(), env.body.kind());
    }
}

#[test]
fn wire_shape_is_stable() {
    let env = &samples()[0];
    let json: serde_json::Value = serde_json::from_slice(&env.encode()).unwrap();
    assert_eq!(json["v"], 1);
    assert_eq!(json["kind"], "task");
    assert_eq!(json["to"], "component/catalogue");
    assert_eq!(json["from"], "client/cli-1");
    assert_eq!(json["body"]["spec"]["type"], "imperative");
    let report = &samples()[2];
    let json: serde_json::Value = serde_json::from_slice(&report.encode()).unwrap();
    assert_eq!(json["body"]["status"], "RESPONSE");
}

#[test]
fn garbage_is_a_typed_error() {
    for garbage in [
        &b""[..],
        b"not json",
        b"{}",
        b"[1,2]",
        b"{\"v\":1}",
        &[0xff, 0xfe, 0x00],
    ] {
        let err = Envelope::decode(garbage).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{garbage:?} -> {err}");
    }
}

#[test]
fn unknown_kind_and_bad_address_are_malformed() {
    let mut json: serde_json::Value = serde_json::from_slice(&samples()[0].encode()).unwrap();
    json["kind"] = "teleport".into();
    let err = Envelope::decode(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)));

    let mut json: serde_json::Value = serde_json::from_slice(&samples()[0].encode()).unwrap();
    json["to"] = "component/Not Valid".into();
    let err = Envelope::decode(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(err.to_string().contains("lowercase"), "{err}");
}

#[test]
fn future_version_is_rejected_with_its_number() {
    let mut json: serde_json::Value = serde_json::from_slice(&samples()[0].encode()).unwrap();
    json["v"] = 2.into();
    json["something_new"] = true.into();
    let err = Envelope::decode(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(
        matches!(err, DecodeError::UnsupportedVersion { found: 2 }),
        "{err}"
    );
}

#[test]
fn oversized_payload_is_rejected_before_parsing() {
    let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(Envelope::decode(&big), Err(DecodeError::TooLarge(_))));
}

#[test]
fn misaddressed_task_is_invalid() {
    let mut env = samples().remove(0);
    env.to = Address::Component(name("carts"));
    let err = Envelope::decode(&env.encode()).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid(_)), "{err}");
}

#[test]
fn addresses_parse_and_print() {
    for s in ["manager", "broadcast", "component/front-end", "client/abc-1"] {
        let a: Address = s.parse().unwrap();
        assert_eq!(a.to_string(), s);
    }
    assert!("pod/x".parse::<Address>().is_err());
    assert!("component/".parse::<Address>().is_err());
    assert_eq!(Address::Component(name("a")).inbox_token(), "component.a");
    assert!(!Address::Broadcast.is_durable());
}

#[test]
fn deadlines_expire() {
    let env = samples().remove(0);
    assert!(!env.is_expired(1_700_000_060_000));
    assert!(env.is_expired(1_700_000_060_001));
}

fn approval_request(component: &str) -> ApprovalRequest {
    ApprovalRequest {
        id: "t-1.s1.c0".into(),
        component: name(component),
        episode: "t-1".into(),
        task_id: Some("t-1".into()),
        call: "scale".into(),
        args: serde_json::json!({"replicas": 3}),
        program: "import acv\nacv.scale(3)\n".into(),
        step: 1,
        seq: 0,
        requested_at_ms: 1,
        expires_at_ms: 2,
    }
}

#[test]
fn approvals_and_audit_round_trip_and_speak_only_for_their_sender() {
    let cat = Address::Component(name("catalogue"));
    let ok = [
        Envelope::new(
            "a",
            cat.clone(),
            Address::Manager,
            1,
            Body::ApprovalRequest(approval_request("catalogue")),
        ),
        Envelope::new(
            "b",
            Address::Manager,
            cat.clone(),
            1,
            Body::ApprovalDecision(ApprovalDecision {
                id: "t-1.s1.c0".into(),
                component: name("catalogue"),
                approve: true,
                by: Some("alice".into()),
                reason: None,
                decided_at_ms: 1,
            }),
        ),
        Envelope::new(
            "c",
            cat.clone(),
            Address::Manager,
            1,
            Body::Audit(AuditBatch {
                component: name("catalogue"),
                records: Vec::new(),
            }),
        ),
    ];
    for env in ok {
        let back = Envelope::decode(&env.encode()).unwrap();
        assert_eq!(back, env);
    }
    // Another component's approval, a decision for another inbox, a request for a read: invalid.
    let forged = Envelope::new(
        "d",
        cat.clone(),
        Address::Manager,
        1,
        Body::ApprovalRequest(approval_request("orders")),
    );
    let err = Envelope::decode(&forged.encode()).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid(_)), "{err}");
    let mut read = approval_request("catalogue");
    read.call = "status".into();
    let env = Envelope::new("e", cat.clone(), Address::Manager, 1, Body::ApprovalRequest(read));
    assert!(matches!(
        Envelope::decode(&env.encode()),
        Err(DecodeError::Invalid(_))
    ));
    let misaddressed = Envelope::new(
        "f",
        Address::Manager,
        Address::Component(name("orders")),
        1,
        Body::ApprovalDecision(ApprovalDecision {
            id: "x".into(),
            component: name("catalogue"),
            approve: false,
            by: None,
            reason: None,
            decided_at_ms: 1,
        }),
    );
    assert!(matches!(
        Envelope::decode(&misaddressed.encode()),
        Err(DecodeError::Invalid(_))
    ));
    let from_client = Envelope::new(
        "g",
        Address::Client(name("someone")),
        Address::Manager,
        1,
        Body::ApprovalRequest(approval_request("catalogue")),
    );
    let err = Envelope::decode(&from_client.encode()).unwrap_err();
    assert!(err.to_string().contains("only that component's sidecar"), "{err}");
    let env = Envelope::new(
        "h",
        Address::Component(name("orders")),
        cat.clone(),
        1,
        Body::ApprovalDecision(ApprovalDecision {
            id: "x".into(),
            component: name("catalogue"),
            approve: true,
            by: None,
            reason: None,
            decided_at_ms: 1,
        }),
    );
    let err = Envelope::decode(&env.encode()).unwrap_err();
    assert!(err.to_string().contains("only the manager decides"), "{err}");
}

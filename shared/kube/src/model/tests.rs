use serde_json::json;

use super::*;
use crate::fixtures;

fn dep() -> Deployment {
    serde_json::from_value(fixtures::deployment(3, "weaveworksdemos/carts:0.4.8", 2, 1)).unwrap()
}

fn pod(state: &str, restarts: i32) -> Pod {
    serde_json::from_value(fixtures::pod("carts-7d4b9c-abcde", state, restarts)).unwrap()
}

#[test]
fn picks_the_named_container_else_the_first() {
    let d = dep();
    let t = &d.spec.template;
    assert_eq!(pick_container(t, "carts", "carts").unwrap().name, "carts");
    assert_eq!(pick_container(t, "other", "carts").unwrap().name, "acv-sidecar");
    let empty = PodTemplateSpec::default();
    assert!(matches!(
        pick_container(&empty, "carts", "carts"),
        Err(KubeError::NoContainer(_))
    ));
}

#[test]
fn env_limits_and_revision() {
    let d = dep();
    let c = pick_container(&d.spec.template, "carts", "carts").unwrap();
    let env = env_of(c);
    assert_eq!(env.get("JAVA_OPTS").map(String::as_str), Some("-Xms64m"));
    assert_eq!(env.len(), 2);
    assert_eq!(
        limits_of(c).unwrap(),
        ResourceLimits {
            cpu_millis: 500,
            memory_mib: 512
        }
    );
    assert_eq!(requests_of(c).unwrap(), (Some(100), Some(200)));
    assert_eq!(revision_of(&d.metadata), 3);
    assert_eq!(revision_of(&ObjectMeta::default()), 0);
}

#[test]
fn missing_limits_read_zero_and_bad_ones_are_typed() {
    let c: Container = serde_json::from_value(json!({"name": "x"})).unwrap();
    assert_eq!(
        limits_of(&c).unwrap(),
        ResourceLimits {
            cpu_millis: 0,
            memory_mib: 0
        }
    );
    let c: Container =
        serde_json::from_value(json!({"name": "x", "resources": {"limits": {"cpu": "lots"}}})).unwrap();
    match limits_of(&c) {
        Err(KubeError::Quantity {
            field: "limits.cpu",
            source: quantity::QuantityError::BadNumber(_),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn value_from_env_is_skipped() {
    let c: Container = serde_json::from_value(json!({"name": "x", "env": [
        {"name": "A", "value": "1"},
        {"name": "EMPTY"},
        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    ]}))
    .unwrap();
    let env = env_of(&c);
    assert_eq!(env.keys().collect::<Vec<_>>(), ["A", "EMPTY"]);
}

#[test]
fn replica_states() {
    let cases = [
        ("ready", ReplicaState::Ready),
        ("crash", ReplicaState::CrashLoopBackOff),
        ("starting", ReplicaState::Starting),
        ("not_ready", ReplicaState::NotReady),
        ("image_pull", ReplicaState::NotReady),
    ];
    for (state, want) in cases {
        let s = replica_status(&pod(state, 4), "carts");
        assert_eq!(s.state, want, "{state}");
        // Restarts are the component container's, not the sidecar's (7).
        assert_eq!(s.restarts, 4);
        assert_eq!(s.name, "carts-7d4b9c-abcde");
    }
    let mut terminating = pod("ready", 0);
    terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    assert_eq!(
        replica_status(&terminating, "carts").state,
        ReplicaState::Terminated
    );
    let mut failed = pod("ready", 0);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    assert_eq!(replica_status(&failed, "carts").state, ReplicaState::Terminated);
    // A pod without our container name falls back to all containers (sum of restarts).
    assert_eq!(replica_status(&pod("ready", 2), "nope").restarts, 9);
}

#[test]
fn selectors() {
    let sel: LabelSelector = serde_json::from_value(json!({
        "matchLabels": {"name": "carts", "app": "shop"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "x", "operator": "NotIn", "values": ["c"]},
            {"key": "y", "operator": "Exists"},
            {"key": "z", "operator": "DoesNotExist"}
        ]
    }))
    .unwrap();
    assert_eq!(
        selector_string(&sel),
        "app=shop,name=carts,tier in (a,b),x notin (c),y,!z"
    );
    let mut d = dep();
    d.spec.selector = LabelSelector::default();
    assert!(matches!(
        deployment_selector(&d, "carts"),
        Err(KubeError::MissingField { .. })
    ));
}

#[test]
fn history_is_ordered_and_filtered() {
    let d = dep();
    let rs = |h, r, img, at, cause| -> ReplicaSet {
        serde_json::from_value(fixtures::replica_set(h, r, img, at, cause)).unwrap()
    };
    let mut foreign = rs("zzz", 1, "other:1", "2026-01-01T00:00:00Z", None);
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
    let sets = vec![
        rs(
            "ccc",
            10,
            "carts:3",
            "2026-01-03T00:00:00Z",
            Some("set_image carts:3"),
        ),
        rs("aaa", 2, "carts:1", "2026-01-01T00:00:00Z", None),
        foreign,
        rs("bbb", 9, "carts:2", "2026-01-02T00:00:00Z", Some("set_env X")),
    ];
    let h = history(&sets, &d, "carts", "carts").unwrap();
    assert_eq!(h.iter().map(|r| r.revision).collect::<Vec<_>>(), [2, 9, 10]);
    assert_eq!(h[0].cause, UNRECORDED_CAUSE);
    assert_eq!(h[1].cause, "set_env X");
    assert_eq!(h[2].image, "carts:3");
    assert_eq!(h[0].created_at_ms, 1_767_225_600_000);
    assert_eq!(
        h[0].limits,
        ResourceLimits {
            cpu_millis: 500,
            memory_mib: 512
        }
    );

    let prev = previous_replica_set(&sets, &d, 10).unwrap();
    assert_eq!(revision_of(&prev.metadata), 9);
    assert!(previous_replica_set(&sets, &d, 2).is_none());
    let t = template_for_rollback(prev).unwrap();
    let labels = t.metadata.unwrap().labels.unwrap();
    assert!(!labels.contains_key(POD_TEMPLATE_HASH_LABEL));
    assert_eq!(labels.get("name").map(String::as_str), Some("carts"));
}

#[test]
fn revision_prediction() {
    let d = dep();
    let before = d.spec.template.clone();
    let mut after = before.clone();
    assert_eq!(predicted_revision(3, &before, &after), 3);
    after.spec.as_mut().unwrap().containers[1].image = Some("carts:new".into());
    assert_eq!(predicted_revision(3, &before, &after), 4);
}

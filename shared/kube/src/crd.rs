//! The `Goal` custom resource (`goals.acv.dev`, version `v1alpha1`): the same spec as the file `acvctl goal apply
//! -f` reads ([`acv_protocol::GoalResource`]), so one YAML works with `acvctl` and `kubectl apply`. Its status is
//! what the manager knows: state, reason, round, events and the last verification.
//!
//! The CRD's YAML is generated from these types (`cargo run -p acv-kube --bin crdgen`) and committed under
//! `manifests/base/crd/`; a test fails when the two differ.

use acv_protocol::goal::{GOAL_API_VERSION, GOAL_KIND, GoalMetadata, describe_result};
use acv_protocol::{GoalObjective, GoalRecord, GoalResource, GoalSpec, GoalState};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of acv's resources.
pub const GROUP: &str = "acv.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The longest goal id the manager accepts (a DNS label).
const MAX_ID: usize = 63;

/// The spec of a `Goal` resource: exactly [`GoalSpec`] (text, objectives, deadlineSeconds, safety, maxRounds).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "acv.dev",
    version = "v1alpha1",
    kind = "Goal",
    plural = "goals",
    singular = "goal",
    shortname = "acvgoal",
    namespaced,
    status = "GoalStatus",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Round","type":"integer","jsonPath":".status.round"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct GoalCrdSpec {
    /// The goal, as `acvctl goal apply -f` reads it.
    #[serde(flatten)]
    pub goal: GoalSpec,
}

/// What the manager knows about a goal, written by the Goal controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoalStatus {
    /// The manager's id of the goal (`<namespace>-<name>`, or `goal-<uid>` when that is too long).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_id: Option<String>,
    /// Where the goal is: accepted, planning, assigned, verifying, achieved, failed, partial or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<GoalState>,
    /// Why it is in this state, for a person; or why the manager refused the goal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Set when the manager refused the goal (invalid, unknown component, changed spec): nothing will happen until
    /// the spec is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Current assign/verify round (0 before the first assignment).
    #[serde(default)]
    pub round: u32,
    /// Number of events the manager recorded for the goal.
    #[serde(default)]
    pub events: u64,
    /// The last event's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
    /// The last verification, one entry per objective.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<ObjectiveStatus>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The judgement of one objective at the last verification.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectiveStatus {
    /// The objective judged.
    pub objective: GoalObjective,
    /// The combined value judged (absent when a component was not measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Whether it holds.
    pub met: bool,
    /// For a person, e.g. `catalogue 310.0 + front-end 120.0 = 430.0, not below 400`.
    pub summary: String,
}

/// The CustomResourceDefinition as YAML, as `crdgen` prints it and `manifests/base/crd/` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let crd = Goal::crd();
    Ok(format!(
        "# Generated from shared/kube/src/crd.rs by `cargo run -p acv-kube --bin crdgen`; do not edit.\n{}",
        serde_yaml::to_string(&crd)?
    ))
}

// === impl Goal ===

impl Goal {
    /// The manager's id of this goal: `<namespace>-<name>` when that is a DNS label of at most 63 characters,
    /// else `goal-<uid>` (unique, stable). `None` when the object has neither a usable name nor a uid.
    pub fn goal_id(&self) -> Option<String> {
        let name = self.metadata.name.as_deref()?;
        let id = match self.metadata.namespace.as_deref() {
            Some(ns) => format!("{ns}-{name}"),
            None => name.to_owned(),
        };
        if id.len() <= MAX_ID {
            return Some(id);
        }
        let uid: String = self.uid()?.chars().filter(char::is_ascii_alphanumeric).collect();
        let uid = uid.to_ascii_lowercase();
        Some(format!("goal-{}", &uid[..uid.len().min(MAX_ID - 5)]))
    }

    /// The same goal as the manager's [`GoalResource`] (the file format of `acvctl goal apply -f`), named by
    /// [`Goal::goal_id`].
    pub fn to_resource(&self) -> GoalResource {
        GoalResource {
            api_version: GOAL_API_VERSION.to_owned(),
            kind: GOAL_KIND.to_owned(),
            metadata: GoalMetadata {
                name: self.goal_id(),
                namespace: self.metadata.namespace.clone(),
                labels: self.labels().clone().into_iter().collect(),
            },
            spec: self.spec.goal.clone(),
        }
    }
}

// === impl GoalStatus ===

impl GoalStatus {
    /// The status of a goal the manager holds, with the number of its events and the last one's message.
    pub fn from_record(
        record: &GoalRecord,
        events: u64,
        last_event: Option<String>,
        generation: Option<i64>,
    ) -> Self {
        Self {
            goal_id: Some(record.id.clone()),
            state: Some(record.state),
            reason: record.reason.clone(),
            refused: None,
            round: record.round,
            events,
            last_event,
            results: record
                .results
                .iter()
                .map(|r| ObjectiveStatus {
                    objective: r.objective.clone(),
                    value: r.value,
                    met: r.met,
                    summary: describe_result(r),
                })
                .collect(),
            observed_generation: generation,
        }
    }

    /// The status of a goal the manager refused (`why`).
    pub fn refused(goal_id: Option<String>, why: String, generation: Option<i64>) -> Self {
        Self {
            goal_id,
            reason: why.clone(),
            refused: Some(why),
            observed_generation: generation,
            ..Self::default()
        }
    }

    /// Nothing more will change: the goal ended or was refused.
    pub fn is_final(&self) -> bool {
        self.refused.is_some() || self.state.is_some_and(GoalState::is_terminal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
apiVersion: acv.dev/v1alpha1
kind: Goal
metadata:
  name: fast-catalogue
  namespace: acv-shop
  labels: {team: shop}
spec:
  text: Reduce the total P99 latency of Catalogue and Front-end to under 400 ms.
  objectives:
    - components: [catalogue, front-end]
      metric: p99_latency_ms
      comparison: below
      threshold: 400
      combine: total
  deadlineSeconds: 600
  maxRounds: 2
"#;

    #[test]
    fn the_crd_reads_the_acvctl_goal_format() {
        let goal: Goal = serde_yaml::from_str(EXAMPLE).unwrap();
        let file: GoalResource = serde_yaml::from_str(EXAMPLE).unwrap();
        assert_eq!(goal.spec.goal, file.spec);
        let resource = goal.to_resource();
        resource.validate().unwrap();
        assert_eq!(resource.metadata.name.as_deref(), Some("acv-shop-fast-catalogue"));
        assert_eq!(
            resource.metadata.labels.get("team").map(String::as_str),
            Some("shop")
        );
        // The spec serialises exactly like the protocol's (no wrapper field).
        assert_eq!(
            serde_json::to_value(&goal.spec).unwrap(),
            serde_json::to_value(&file.spec).unwrap()
        );
    }

    #[test]
    fn long_names_fall_back_to_the_uid() {
        let mut goal: Goal = serde_yaml::from_str(EXAMPLE).unwrap();
        goal.metadata.name = Some("n".repeat(60));
        assert_eq!(goal.goal_id(), None, "no uid: no id");
        goal.metadata.uid = Some("0F1E2D3C-0000-4000-8000-00000000000A".into());
        let id = goal.goal_id().unwrap();
        assert_eq!(id, "goal-0f1e2d3c00004000800000000000000a");
        assert!(goal.to_resource().validate().is_ok());
    }

    #[test]
    fn the_schema_is_structural_and_describes_the_spec() {
        let crd = serde_json::to_value(Goal::crd()).unwrap();
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], VERSION);
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let props = spec["properties"].as_object().unwrap();
        for key in ["text", "objectives", "deadlineSeconds", "safety", "maxRounds"] {
            assert!(props.contains_key(key), "spec.{key} missing from {spec}");
        }
        let objective = &props["objectives"]["items"]["properties"];
        assert_eq!(objective["components"]["items"]["maxLength"], 63);
        assert!(
            objective["metric"]["enum"]
                .as_array()
                .unwrap()
                .contains(&"p99_latency_ms".into())
        );
        // Structural: no $ref, no definitions left.
        let text = crd.to_string();
        assert!(!text.contains("$ref") && !text.contains("definitions"), "{text}");
        assert_eq!(crd["metadata"]["name"], "goals.acv.dev");
    }
}

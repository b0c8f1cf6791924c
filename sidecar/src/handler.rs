//! What the sidecar does with one task.

use acv_protocol::{ComponentName, Evidence, ReportBody, ReportStatus, TaskBody};
use async_trait::async_trait;

/// Handles one task and produces the report that answers it.
#[async_trait]
pub trait TaskHandler: Send + Sync {
    /// Handles `task` for `component`.
    async fn handle(&self, component: &ComponentName, task: &TaskBody) -> ReportBody;
    /// A short name for the registry (`none`, `rules`, `llm:<model>`).
    fn planner_name(&self) -> String;
}

/// The handler used while no planner is configured: it does nothing and says so, as an ISSUE report.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPlanner;

#[async_trait]
impl TaskHandler for NoPlanner {
    async fn handle(&self, component: &ComponentName, task: &TaskBody) -> ReportBody {
        ReportBody {
            task_id: task.task_id.clone(),
            component: component.clone(),
            status: ReportStatus::Issue,
            message: format!(
                "no planner configured: the sidecar of {component} received the task but cannot plan or execute \
                 it, so nothing was done (task: {:?})",
                task.spec.text()
            ),
            evidence: vec![Evidence { name: "planner".into(), value: serde_json::json!("none") }],
            steps: Vec::new(),
        }
    }

    fn planner_name(&self) -> String {
        "none".into()
    }
}

//! `acvctl`: the command-line client of the acv manager's HTTP API.
//!
//! Exit codes: 0 achieved (or the request succeeded), 3 failed/partial/cancelled (or a task answered ISSUE),
//! 4 timeout, 2 bad input (the manager refused the goal, or the command line is wrong), 1 anything else.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use acv_manager::api::{AgentView, ErrorBody, GoalDetail, TaskRequest};
use acv_manager::store::{TaskRecord, TaskState};
use acv_protocol::{
    ComponentName, EventKind, GoalEvent, GoalRecord, GoalResource, GoalSpec, GoalState, ReportStatus,
    SafetyMode, goal::describe_result,
};
use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::StreamExt;

mod ops;

const EXIT_NOT_ACHIEVED: u8 = 3;
const EXIT_TIMEOUT: u8 = 4;
const EXIT_BAD_INPUT: u8 = 2;

/// Client of the acv manager: goals, agents, tasks, approvals.
#[derive(Debug, Parser)]
#[command(name = "acvctl", version, about)]
struct Cli {
    /// The manager's API URL.
    #[arg(
        long,
        global = true,
        env = "ACV_MANAGER_URL",
        default_value = "http://127.0.0.1:9080"
    )]
    manager: String,
    /// Bearer token for the API.
    #[arg(long, global = true, env = "ACV_MANAGER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Declarative goals.
    Goal {
        #[command(subcommand)]
        command: GoalCommand,
    },
    /// Sidecars known to the manager, with liveness.
    Agents,
    /// Tasks sent through the manager.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Calls queued by sidecars in approve mode.
    Approvals {
        #[command(subcommand)]
        command: ops::ApprovalCommand,
    },
    /// The sidecars' audit trail: programs, host calls, peer calls, reports.
    Audit(ops::AuditArgs),
    /// Episodes (a sidecar's work on one task or violation), from the audit trail.
    Episodes(ops::EpisodesArgs),
}

#[derive(Debug, clap::Args)]
struct WaitArgs {
    /// Wait for the goal to finish, showing its events.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this long (exit 4).
    #[arg(long, default_value = "10m", value_parser = acv_core::env::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum GoalCommand {
    /// Create a goal from plain words, e.g. "Reduce the P99 latency of Catalogue to under 300 ms."
    Create {
        /// The goal.
        text: String,
        /// Name (id) of the goal; generated when absent.
        #[arg(long)]
        name: Option<String>,
        /// Deadline after creation.
        #[arg(long, value_parser = acv_core::env::parse_duration)]
        deadline: Option<Duration>,
        /// Safety mode: observe (only measure), approve, autonomous.
        #[arg(long)]
        safety: Option<SafetyMode>,
        /// Rounds of assign/verify.
        #[arg(long)]
        max_rounds: Option<u32>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Create a goal from a Goal resource file (YAML or JSON; `-` reads stdin).
    Apply {
        /// The file.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List goals.
    List {
        /// Only goals in this state.
        #[arg(long)]
        state: Option<GoalState>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one goal with its subtasks and events.
    Get {
        /// Goal id.
        id: String,
    },
    /// Follow a goal's events until it finishes.
    Watch {
        /// Goal id.
        id: String,
        /// Give up after this long (exit 4).
        #[arg(long, default_value = "10m", value_parser = acv_core::env::parse_duration)]
        timeout: Duration,
    },
    /// Cancel a goal.
    Cancel {
        /// Goal id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Send an imperative task to a component through the manager and wait for its report.
    Send {
        /// The component.
        #[arg(long)]
        to: ComponentName,
        /// How long to wait for the report (exit 4 after).
        #[arg(long, default_value = "2m", value_parser = acv_core::env::parse_duration)]
        timeout: Duration,
        /// The task in words.
        text: String,
    },
    /// List recent tasks.
    List,
}

/// An error with the exit code it maps to.
struct Failure(u8, String);

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure(1, format!("{e:#}"))
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(&self, r: reqwest::RequestBuilder) -> Result<T, Failure> {
        let resp = r
            .send()
            .await
            .map_err(|e| Failure(1, format!("cannot reach the manager at {}: {e}", self.base)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Failure(1, format!("reading the answer: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| Failure(1, format!("bad answer from the manager: {e}")));
        }
        let msg = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        let code = match status.as_u16() {
            400 | 409 | 422 => EXIT_BAD_INPUT,
            _ => 1,
        };
        Err(Failure(code, format!("{msg} (HTTP {})", status.as_u16())))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let http = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let api = Api {
        http,
        base: cli.manager.trim_end_matches('/').to_owned(),
        token: cli.token.clone(),
    };
    acv_core::block_on(async move {
        match run(&api, cli.command, cli.json).await {
            Ok(code) => ExitCode::from(code),
            Err(Failure(code, msg)) => {
                eprintln!("error: {msg}");
                ExitCode::from(code)
            }
        }
    })
}

async fn run(api: &Api, command: Command, json: bool) -> Result<u8, Failure> {
    match command {
        Command::Goal { command } => goal(api, command, json).await,
        Command::Approvals { command } => ops::approvals(api, command, json).await,
        Command::Audit(args) => ops::audit(api, args, json).await,
        Command::Episodes(args) => ops::episodes(api, args, json).await,
        Command::Agents => {
            let agents: Vec<AgentView> = api.send(api.req(reqwest::Method::GET, "/v1/agents")).await?;
            if json {
                print_json(&agents)?;
            } else {
                let now = acv_core::now_ms();
                let rows = agents
                    .iter()
                    .map(|a| {
                        vec![
                            a.component.to_string(),
                            if a.live { "yes" } else { "no" }.to_owned(),
                            a.healthy.map_or("-", |h| if h { "yes" } else { "no" }).to_owned(),
                            format!("{}s ago", now.saturating_sub(a.last_seen_ms) / 1000),
                            a.planner.clone(),
                            a.version.clone(),
                        ]
                    })
                    .collect();
                table(
                    &["COMPONENT", "LIVE", "HEALTHY", "LAST SEEN", "PLANNER", "VERSION"],
                    rows,
                );
            }
            Ok(0)
        }
        Command::Task {
            command: TaskCommand::Send { to, timeout, text },
        } => {
            let req = TaskRequest {
                to,
                text,
                timeout_secs: Some(timeout.as_secs().max(1)),
            };
            let task: TaskRecord = api
                .send(api.req(reqwest::Method::POST, "/v1/tasks").json(&req))
                .await?;
            let started = Instant::now();
            loop {
                let t: TaskRecord = api
                    .send(api.req(reqwest::Method::GET, &format!("/v1/tasks/{}", task.id)))
                    .await?;
                if t.state == TaskState::Reported
                    && let Some(r) = &t.report
                {
                    if json {
                        print_json(&t)?;
                    } else {
                        let word = match r.status {
                            ReportStatus::Response => "RESPONSE",
                            ReportStatus::Issue => "ISSUE",
                        };
                        println!("{word} from {}: {}", r.component, r.message);
                        for s in &r.steps {
                            println!("  step {} [{:?}] {}", s.index, s.outcome, s.description);
                        }
                    }
                    return Ok(match r.status {
                        ReportStatus::Response => 0,
                        ReportStatus::Issue => EXIT_NOT_ACHIEVED,
                    });
                }
                if started.elapsed() >= timeout {
                    eprintln!(
                        "error: no report from {} within {:?} (task {})",
                        t.component, timeout, t.id
                    );
                    return Ok(EXIT_TIMEOUT);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        Command::Task {
            command: TaskCommand::List,
        } => {
            let tasks: Vec<TaskRecord> = api.send(api.req(reqwest::Method::GET, "/v1/tasks")).await?;
            if json {
                print_json(&tasks)?;
            } else {
                let rows = tasks
                    .iter()
                    .map(|t| {
                        let status = t
                            .report
                            .as_ref()
                            .map_or("sent".to_owned(), |r| format!("{:?}", r.status));
                        vec![
                            t.id.clone(),
                            t.component.to_string(),
                            status,
                            truncate(&t.text, 60),
                        ]
                    })
                    .collect();
                table(&["ID", "COMPONENT", "STATUS", "TEXT"], rows);
            }
            Ok(0)
        }
    }
}

async fn goal(api: &Api, command: GoalCommand, json: bool) -> Result<u8, Failure> {
    match command {
        GoalCommand::Create {
            text,
            name,
            deadline,
            safety,
            max_rounds,
            wait,
        } => {
            let spec = GoalSpec {
                text,
                deadline_seconds: deadline.map(|d| d.as_secs().max(1)),
                safety,
                max_rounds,
                ..GoalSpec::default()
            };
            create(api, GoalResource::new(name, spec), &wait, json).await
        }
        GoalCommand::Apply { file, wait } => {
            let raw = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let resource: GoalResource = serde_yaml::from_str(&raw).map_err(|e| {
                Failure(
                    EXIT_BAD_INPUT,
                    format!("{} is not a Goal resource: {e}", file.display()),
                )
            })?;
            resource
                .validate()
                .map_err(|e| Failure(EXIT_BAD_INPUT, format!("{}: {e}", file.display())))?;
            create(api, resource, &wait, json).await
        }
        GoalCommand::List { state, limit } => {
            let mut path = format!("/v1/goals?limit={limit}");
            if let Some(s) = state {
                path.push_str(&format!("&state={s}"));
            }
            let goals: Vec<GoalRecord> = api.send(api.req(reqwest::Method::GET, &path)).await?;
            if json {
                print_json(&goals)?;
            } else {
                let rows = goals
                    .iter()
                    .map(|g| {
                        vec![
                            g.id.clone(),
                            g.state.to_string(),
                            g.round.to_string(),
                            clock(g.created_ms),
                            truncate(&goal_words(g), 70),
                        ]
                    })
                    .collect();
                table(&["ID", "STATE", "ROUND", "CREATED", "GOAL"], rows);
            }
            Ok(0)
        }
        GoalCommand::Get { id } => {
            let d: GoalDetail = api
                .send(api.req(reqwest::Method::GET, &format!("/v1/goals/{id}")))
                .await?;
            if json {
                print_json(&d)?;
            } else {
                print_detail(&d);
            }
            Ok(exit_for(d.goal.state))
        }
        GoalCommand::Watch { id, timeout } => watch(api, &id, timeout, json).await,
        GoalCommand::Cancel { id } => {
            let g: GoalRecord = api
                .send(api.req(reqwest::Method::POST, &format!("/v1/goals/{id}/cancel")))
                .await?;
            if json {
                print_json(&g)?;
            } else {
                println!("goal {} {}", g.id, g.state);
            }
            Ok(0)
        }
    }
}

async fn create(api: &Api, resource: GoalResource, wait: &WaitArgs, json: bool) -> Result<u8, Failure> {
    let g: GoalRecord = api
        .send(api.req(reqwest::Method::POST, "/v1/goals").json(&resource))
        .await?;
    if !wait.wait {
        if json {
            print_json(&g)?;
        } else {
            println!("goal {} {}", g.id, g.state);
        }
        return Ok(0);
    }
    if !json {
        println!("goal {} {}", g.id, g.state);
    }
    watch(api, &g.id, wait.timeout, json).await
}

fn exit_for(state: GoalState) -> u8 {
    match state {
        GoalState::Achieved => 0,
        GoalState::Failed | GoalState::Partial | GoalState::Cancelled => EXIT_NOT_ACHIEVED,
        GoalState::Accepted | GoalState::Planning | GoalState::Assigned | GoalState::Verifying => 0,
    }
}

/// Follows the SSE stream (reconnecting with Last-Event-ID) until the goal finishes or `timeout` passes.
async fn watch(api: &Api, id: &str, timeout: Duration, json: bool) -> Result<u8, Failure> {
    let started = Instant::now();
    let spinner = !json && std::io::stderr().is_terminal();
    let mut last_seq = 0u64;
    let mut state = GoalState::Accepted;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            clear_spinner(spinner);
            eprintln!("error: goal {id} not finished within {timeout:?} (still {state})");
            return Ok(EXIT_TIMEOUT);
        }
        let resp = api
            .req(reqwest::Method::GET, &format!("/v1/goals/{id}/events"))
            .header("Last-Event-ID", last_seq.to_string())
            .send()
            .await
            .map_err(|e| Failure(1, format!("cannot reach the manager at {}: {e}", api.base)))?;
        if !resp.status().is_success() {
            let code = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            let msg = serde_json::from_str::<ErrorBody>(&body).map_or(body, |b| b.message);
            return Err(Failure(if code == 404 { EXIT_BAD_INPUT } else { 1 }, msg));
        }
        let mut bytes = resp.bytes_stream();
        let mut buf = String::new();
        let mut tick = tokio::time::interval(Duration::from_millis(120));
        let mut frame = 0usize;
        let deadline = tokio::time::Instant::now() + left;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tick.tick(), if spinner => {
                    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
                    frame += 1;
                    eprint!("\r{} {state} ({}s)\x1b[K", FRAMES[frame % FRAMES.len()], started.elapsed().as_secs());
                    let _flushed = std::io::stderr().flush();
                }
                chunk = bytes.next() => {
                    let Some(Ok(chunk)) = chunk else { break };
                    buf.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buf.find("\n\n") {
                        let block: String = buf.drain(..end + 2).collect();
                        let Some(e) = parse_sse(&block) else { continue };
                        last_seq = e.seq;
                        state = e.state;
                        clear_spinner(spinner);
                        if json {
                            println!("{}", serde_json::to_string(&e).unwrap_or_default());
                        } else {
                            println!("{}  {:<10} {}", clock(e.at_ms), e.state.as_str(), e.message);
                        }
                        if e.kind == EventKind::State && e.state.is_terminal() {
                            return Ok(exit_for(e.state));
                        }
                    }
                }
            }
        }
        // The stream ended without a final state (manager restarting?): reconnect after a short pause.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn clear_spinner(on: bool) {
    if on {
        eprint!("\r\x1b[K");
    }
}

fn parse_sse(block: &str) -> Option<GoalEvent> {
    let mut data = String::new();
    let mut event = "message";
    for line in block.lines() {
        if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        } else if let Some(e) = line.strip_prefix("event:") {
            event = e.trim();
        }
    }
    (event == "goal")
        .then(|| serde_json::from_str(&data).ok())
        .flatten()
}

fn print_detail(d: &GoalDetail) {
    let g = &d.goal;
    println!("goal      {}", g.id);
    println!("state     {} — {}", g.state, g.reason);
    println!("asked     {}", goal_words(g));
    println!("round     {}   deadline {}", g.round, clock(g.deadline_ms));
    for o in &g.objectives {
        println!("objective {}", o.describe());
    }
    for r in &g.results {
        println!("measured  {}", describe_result(r));
    }
    if !d.subtasks.is_empty() {
        println!();
        let rows = d
            .subtasks
            .iter()
            .map(|s| {
                vec![
                    s.round.to_string(),
                    s.component.to_string(),
                    s.state.as_str().to_owned(),
                    s.attempts.to_string(),
                    truncate(&s.message, 70),
                ]
            })
            .collect();
        table(&["ROUND", "COMPONENT", "SUBTASK", "ATTEMPTS", "ANSWER"], rows);
    }
    if !d.events.is_empty() {
        println!();
        for e in &d.events {
            println!("{}  {:<10} {}", clock(e.at_ms), e.state.as_str(), e.message);
        }
    }
}

fn goal_words(g: &GoalRecord) -> String {
    if g.spec.text.is_empty() {
        g.spec
            .objectives
            .iter()
            .map(|o| o.describe())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        g.spec.text.clone()
    }
}

fn clock(ms: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r);
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Failure(1, e.to_string()))?;
    println!("{s}");
    Ok(())
}

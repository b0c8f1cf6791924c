//! `acvctl approvals`, `acvctl audit` and `acvctl episodes`: the operator's side of approve mode and the audit
//! trail.

use acv_manager::api::DecisionRequest;
use acv_manager::episodes::Episode;
use acv_manager::store::{Approval, AuditEntry};
use acv_protocol::{ApprovalState, ComponentName, describe_call};
use clap::Subcommand;

use super::{Api, EXIT_BAD_INPUT, Failure, clock, print_json, table, truncate};

#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// List approvals (pending ones by default).
    List {
        /// Only in this state (pending, approved, denied, expired, executed, failed); `all` for every state.
        #[arg(long, default_value = "pending")]
        state: String,
        /// Only of this component.
        #[arg(long)]
        component: Option<ComponentName>,
    },
    /// Show one approval with the program that wanted it.
    Get {
        /// Approval id.
        id: String,
    },
    /// Approve a call: the sidecar runs exactly it, once.
    Approve {
        /// Approval id.
        id: String,
        #[command(flatten)]
        decision: DecisionArgs,
    },
    /// Deny a call: it never runs.
    Deny {
        /// Approval id.
        id: String,
        #[command(flatten)]
        decision: DecisionArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct DecisionArgs {
    /// Who decides (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Why.
    #[arg(long)]
    reason: Option<String>,
}

pub async fn approvals(api: &Api, command: ApprovalCommand, json: bool) -> Result<u8, Failure> {
    let (id, approve, decision) = match command {
        ApprovalCommand::List { state, component } => {
            let mut path = "/v1/approvals?limit=200".to_owned();
            if state != "all" {
                let s: ApprovalState = state.parse().map_err(|e| Failure(EXIT_BAD_INPUT, e))?;
                path.push_str(&format!("&state={s}"));
            }
            if let Some(c) = component {
                path.push_str(&format!("&component={c}"));
            }
            let list: Vec<Approval> = api.send(api.req(reqwest::Method::GET, &path)).await?;
            if json {
                print_json(&list)?;
            } else {
                let rows = list
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.clone(),
                            a.component.to_string(),
                            a.state.to_string(),
                            truncate(&describe_call(&a.call, &a.args), 40),
                            clock(a.requested_ms),
                            clock(a.expires_ms),
                            a.decided_by.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(
                    &["ID", "COMPONENT", "STATE", "CALL", "REQUESTED", "EXPIRES", "BY"],
                    rows,
                );
            }
            return Ok(0);
        }
        ApprovalCommand::Get { id } => {
            let a: Approval = api
                .send(api.req(reqwest::Method::GET, &format!("/v1/approvals/{id}")))
                .await?;
            if json {
                print_json(&a)?;
            } else {
                print_approval(&a);
            }
            return Ok(0);
        }
        ApprovalCommand::Approve { id, decision } => (id, true, decision),
        ApprovalCommand::Deny { id, decision } => (id, false, decision),
    };
    let body = DecisionRequest {
        by: decision.by.or_else(|| std::env::var("USER").ok()),
        reason: decision.reason,
    };
    let verb = if approve { "approve" } else { "deny" };
    let a: Approval = api
        .send(
            api.req(reqwest::Method::POST, &format!("/v1/approvals/{id}/{verb}"))
                .json(&body),
        )
        .await?;
    if json {
        print_json(&a)?;
    } else {
        println!(
            "approval {} {}: {} on {}",
            a.id,
            a.state,
            describe_call(&a.call, &a.args),
            a.component
        );
    }
    Ok(0)
}

fn print_approval(a: &Approval) {
    println!("approval  {}", a.id);
    println!("state     {}", a.state);
    println!("component {}   episode {}", a.component, a.episode);
    println!("call      {}", describe_call(&a.call, &a.args));
    println!(
        "requested {}   expires {}",
        clock(a.requested_ms),
        clock(a.expires_ms)
    );
    if let Some(by) = &a.decided_by {
        println!(
            "decided   by {by} at {}{}",
            a.decided_ms.map(clock).unwrap_or_default(),
            a.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        );
    }
    if let Some(r) = &a.result {
        println!("result    {r}");
    }
    println!("program:");
    for line in a.program.lines() {
        println!("    {line}");
    }
}

/// `acvctl audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only of this component.
    #[arg(long)]
    component: Option<ComponentName>,
    /// Only of this episode (task id, issue id, peer request id).
    #[arg(long)]
    episode: Option<String>,
    /// Only at or after this time (RFC 3339, e.g. 2026-11-27T21:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

/// `acvctl episodes`.
#[derive(Debug, clap::Args)]
pub struct EpisodesArgs {
    /// Only of this component.
    #[arg(long)]
    component: Option<ComponentName>,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 10)]
    limit: u32,
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    parts.join("&")
}

/// Percent-encodes a query value (RFC 3339 times carry `+` and `:`).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn audit(api: &Api, args: AuditArgs, json: bool) -> Result<u8, Failure> {
    let q = query(&[
        ("component", args.component.map(|c| c.to_string())),
        ("episode", args.episode),
        ("since", args.since),
        ("limit", Some(args.limit.to_string())),
    ]);
    let records: Vec<AuditEntry> = api
        .send(api.req(reqwest::Method::GET, &format!("/v1/audit?{q}")))
        .await?;
    if json {
        print_json(&records)?;
        return Ok(0);
    }
    let rows = records
        .iter()
        .map(|r| {
            let what = match (&r.name, &r.args) {
                (Some(n), Some(a)) if a.as_object().is_some_and(|m| !m.is_empty()) => describe_call(n, a),
                (Some(n), _) => n.clone(),
                (None, _) => String::new(),
            };
            vec![
                clock(r.at_ms),
                r.component.to_string(),
                truncate(&r.episode, 24),
                r.kind.to_string(),
                truncate(&what, 50),
                r.outcome.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["AT", "COMPONENT", "EPISODE", "KIND", "WHAT", "OUTCOME"], rows);
    Ok(0)
}

pub async fn episodes(api: &Api, args: EpisodesArgs, json: bool) -> Result<u8, Failure> {
    let q = query(&[
        ("component", args.component.map(|c| c.to_string())),
        ("limit", Some(args.limit.to_string())),
    ]);
    let list: Vec<Episode> = api
        .send(api.req(reqwest::Method::GET, &format!("/v1/episodes?{q}")))
        .await?;
    if json {
        print_json(&list)?;
        return Ok(0);
    }
    for (i, e) in list.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{:.1}s", v as f64 / 1000.0));
        println!(
            "{} {} [{}] {} → {}  outcome {}  detect {}  mitigate {}",
            e.component,
            e.id,
            e.trigger,
            clock(e.started_ms),
            e.ended_ms.map(clock).unwrap_or_else(|| "running".into()),
            e.outcome.as_deref().unwrap_or("-"),
            ms(e.time_to_detect_ms),
            ms(e.time_to_mitigate_ms),
        );
        for (n, s) in e.steps.iter().enumerate() {
            println!("  step {} [{}]", n + 1, s.verdict);
            for c in &s.calls {
                println!("    {} → {}", describe_call(&c.name, &c.args), c.outcome);
            }
        }
        if let Some(message) = e
            .report
            .as_ref()
            .and_then(|r| r.get("message"))
            .and_then(|m| m.as_str())
        {
            println!("  report: {}", truncate(message, 200));
        }
    }
    Ok(0)
}

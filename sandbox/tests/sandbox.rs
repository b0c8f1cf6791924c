//! Paired tests (limit obeyed / limit violated) against the real guest component. The guest is built by
//! `make -C sandbox/guest` when missing (needs componentize-py); a build failure fails the tests, never skips them.

use std::sync::Arc;
use std::time::Duration;

use acv_protocol::{ComponentName, ReportStatus};
use acv_sandbox::fake::FakeCluster;
use acv_sandbox::{CallOutcome, HostCall, Limits, RunOutcome, SafetyMode, Sandbox, Verdict};

fn sandbox() -> Sandbox {
    acv_sandbox::dev::shared_sandbox().unwrap_or_else(|e| panic!("sandbox: {e}"))
}

fn own() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

fn cluster() -> Arc<FakeCluster> {
    let c = FakeCluster::with_component(&own());
    c.insert(acv_sandbox::fake::FakeComponent::healthy(
        &ComponentName::new("payment").unwrap(),
        "payment:1.0",
        1,
    ));
    Arc::new(c)
}

async fn run_with(program: &str, mode: SafetyMode, caps: Arc<FakeCluster>, limits: Limits) -> RunOutcome {
    sandbox().run(program, &own(), mode, caps, limits).await.unwrap()
}

async fn run(program: &str, mode: SafetyMode) -> (RunOutcome, Arc<FakeCluster>) {
    let caps = cluster();
    (
        run_with(program, mode, Arc::clone(&caps), Limits::default()).await,
        caps,
    )
}

fn traceback(outcome: &RunOutcome) -> &str {
    match &outcome.verdict {
        Verdict::GuestError { traceback } | Verdict::Refused { traceback, .. } => traceback,
        other => panic!(
            "expected a guest error, got {other:?} (stderr: {})",
            outcome.stderr
        ),
    }
}

fn assert_ok(outcome: &RunOutcome) {
    assert_eq!(
        outcome.verdict,
        Verdict::Ok,
        "stdout: {}\nstderr: {}",
        outcome.stdout,
        outcome.stderr
    );
}

#[tokio::test]
async fn normal_program_uses_the_host_api_and_reports() {
    let program = r#"
import acv, json
s = acv.status()
m = acv.metrics(window_secs=30)
logs = acv.logs(tail=1)
h = acv.history()
print(acv.component(), s["ready_replicas"], s["limits"]["cpu_millis"], m["window_secs"], m["p99_ms"])
print(logs, len(h), h[0]["cause"])
acv.report("RESPONSE", f"{s['ready_replicas']} replicas ready, p99 {m['p99_ms']} ms")
"#;
    let (out, caps) = run(program, SafetyMode::Observe).await;
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "catalogue 2 500 30.0 42.0\n['catalogue listening on :8080'] 1 deploy\n"
    );
    let names: Vec<&str> = out.calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["status", "metrics", "logs", "history", "report"]);
    assert!(
        out.calls
            .iter()
            .all(|c| matches!(c.outcome, CallOutcome::Ok { .. }))
    );
    assert_eq!(out.calls[1].args, serde_json::json!({ "window_secs": 30 }));
    let report = out.report.expect("report recorded");
    assert_eq!(report.status, ReportStatus::Response);
    assert_eq!(report.message, "2 replicas ready, p99 42.0 ms");
    assert_eq!(caps.reports().len(), 1);
    assert!(out.fuel_consumed > 0);
}

#[tokio::test]
async fn bounded_loop_fits_the_cpu_budget_and_infinite_loop_runs_out_of_fuel() {
    let limits = Limits {
        fuel: 500_000_000,
        wall_clock: Duration::from_secs(120),
        ..Limits::default()
    };
    let ok = run_with(
        "n = 0\nfor i in range(10_000):\n    n += i\nprint(n)",
        SafetyMode::Observe,
        cluster(),
        limits.clone(),
    )
    .await;
    assert_ok(&ok);
    assert_eq!(ok.stdout, "49995000\n");
    assert!(ok.fuel_consumed < limits.fuel);

    let looping = run_with(
        "print('start')\nwhile True:\n    pass",
        SafetyMode::Observe,
        cluster(),
        limits.clone(),
    )
    .await;
    assert_eq!(looping.verdict, Verdict::OutOfFuel);
    assert_eq!(looping.stdout, "start\n", "output before the trap is kept");
    assert_eq!(looping.fuel_consumed, limits.fuel);
}

#[tokio::test]
async fn infinite_loop_with_ample_fuel_hits_the_wall_clock_deadline() {
    let limits = Limits {
        fuel: u64::MAX / 2,
        wall_clock: Duration::from_millis(300),
        ..Limits::default()
    };
    let out = run_with("while True:\n    pass", SafetyMode::Observe, cluster(), limits).await;
    assert_eq!(out.verdict, Verdict::Timeout);
}

#[tokio::test]
async fn sleeping_program_hits_the_wall_clock_deadline() {
    let limits = Limits {
        wall_clock: Duration::from_millis(300),
        ..Limits::default()
    };
    let out = run_with(
        "import time\ntime.sleep(3600)",
        SafetyMode::Observe,
        cluster(),
        limits,
    )
    .await;
    assert_eq!(out.verdict, Verdict::Timeout);
}

#[tokio::test]
async fn slow_backend_call_hits_the_wall_clock_deadline() {
    let caps = Arc::new(FakeCluster::with_component(&own()).with_delay(Duration::from_secs(3600)));
    let limits = Limits {
        wall_clock: Duration::from_millis(300),
        ..Limits::default()
    };
    let out = run_with("import acv\nacv.status()", SafetyMode::Observe, caps, limits).await;
    assert_eq!(out.verdict, Verdict::Timeout);
}

#[tokio::test]
async fn small_allocation_fits_and_one_gib_allocation_hits_the_memory_cap() {
    let ok = run_with(
        "b = bytearray(8 << 20)\nprint(len(b))",
        SafetyMode::Observe,
        cluster(),
        Limits::default(),
    )
    .await;
    assert_ok(&ok);
    assert_eq!(ok.stdout, "8388608\n");

    let program = "try:\n    b = bytearray(1 << 30)\nexcept MemoryError:\n    print('caught')\n";
    let out = run_with(program, SafetyMode::Observe, cluster(), Limits::default()).await;
    assert_eq!(out.verdict, Verdict::MemoryLimit, "stdout: {}", out.stdout);
    assert_eq!(out.stdout, "", "the program cannot catch the memory cap");
}

#[tokio::test]
async fn growing_list_hits_the_memory_cap() {
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let out = run_with(
        "x = []\nwhile True:\n    x.append(bytearray(65536))",
        SafetyMode::Observe,
        cluster(),
        limits,
    )
    .await;
    assert_eq!(out.verdict, Verdict::MemoryLimit);
}

#[tokio::test]
async fn files_are_denied_even_through_the_raw_io_layer() {
    let (out, _) = run("print(open('/etc/passwd').read())", SafetyMode::Observe).await;
    assert!(traceback(&out).contains("PermissionError"), "{}", traceback(&out));

    // Bypass the guest wrapper: find the raw FileIO class through the object graph. The host has no preopened
    // directories, so WASI itself refuses.
    let program = r#"
fio = [c for c in object.__subclasses__() if c.__name__ == '_IOBase'][0]
fileio = [c for c in fio.__subclasses__() if c.__name__ == '_RawIOBase'][0].__subclasses__()
fileio = [c for c in fileio if c.__name__ == 'FileIO'][0]
fileio('/etc/passwd').read()
"#;
    let (out, _) = run(program, SafetyMode::Observe).await;
    let tb = traceback(&out);
    assert!(tb.contains("Error"), "{tb}");
    assert!(!tb.contains("root:"), "{tb}");
}

#[tokio::test]
async fn os_subprocess_and_socket_imports_are_absent() {
    for module in ["os", "subprocess", "socket", "sys", "importlib", "ctypes"] {
        let (out, _) = run(&format!("import {module}"), SafetyMode::Observe).await;
        let tb = traceback(&out);
        assert!(
            tb.contains("ImportError") && tb.contains("not available in the sandbox"),
            "{module}: {tb}"
        );
    }
    // The allow-listed modules work.
    let (out, _) = run(
        "import json, math, re, statistics\nprint(statistics.mean([1, 2, 3]))",
        SafetyMode::Observe,
    )
    .await;
    assert_ok(&out);
    assert_eq!(out.stdout, "2\n");
}

#[tokio::test]
async fn environ_is_empty_and_process_spawning_fails_even_when_os_is_reached() {
    // Reach the real `os` module through the object graph (the guest wrapper is not a boundary).
    let program = r#"
wrap = [c for c in object.__subclasses__() if c.__name__ == '_wrap_close'][0]
os = wrap.__init__.__globals__  # the real os module's namespace
print(dict(os['environ']))
for name in ('system', 'fork', 'execv', 'posix_spawn', 'popen'):
    fn = os.get(name)
    if fn is None:
        print(name, 'absent')
    else:
        try:
            fn('/bin/true') if name != 'fork' else fn()
            print(name, 'RAN')
        except Exception as e:
            print(name, 'failed', type(e).__name__)
try:
    os['listdir']('/')
    print('listdir RAN')
except Exception as e:
    print('listdir failed', type(e).__name__)
"#;
    let (out, _) = run(program, SafetyMode::Observe).await;
    assert_ok(&out);
    println!("{}", out.stdout);
    assert!(out.stdout.starts_with("{}\n"), "{}", out.stdout);
    assert!(out.stdout.contains("listdir failed"), "{}", out.stdout);
    assert!(!out.stdout.contains("RAN"), "{}", out.stdout);
}

#[tokio::test]
async fn sockets_are_denied_by_the_host() {
    // Import the builtin _socket module with the real importer, bypassing the guest's allow-list.
    let program = r#"
wrap = [c for c in object.__subclasses__() if c.__name__ == '_wrap_close'][0]
real_import = wrap.__init__.__globals__['sys'].modules['builtins'].__import__
try:
    _socket = real_import('_socket')
except ImportError as e:
    print('no _socket module')
else:
    try:
        s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        s.connect(('127.0.0.1', 22))
        print('CONNECTED')
    except OSError as e:
        print('denied', type(e).__name__)
"#;
    let (out, _) = run(program, SafetyMode::Observe).await;
    // The interpreter has a socket module, but the host's WASI context denies TCP/UDP outright.
    assert_ok(&out);
    assert_eq!(out.stdout, "denied PermissionError\n");
}

#[tokio::test]
async fn acting_on_another_component_is_refused_by_the_host() {
    let (out, caps) = run(
        "import acv\nacv.scale(5, component='payment')",
        SafetyMode::Autonomous,
    )
    .await;
    match &out.verdict {
        Verdict::Refused { reason, traceback } => {
            assert!(
                reason.contains("payment") && reason.contains("out of scope"),
                "{reason}"
            );
            assert!(traceback.contains("HostError: refused"), "{traceback}");
        }
        other => panic!("expected refused, got {other:?}"),
    }
    assert!(matches!(out.calls[0].outcome, CallOutcome::Refused { .. }));
    assert_eq!(
        out.calls[0].args,
        serde_json::json!({ "replicas": 5, "component": "payment" })
    );
    assert!(
        caps.calls().is_empty(),
        "the backend was never called: {:?}",
        caps.calls()
    );
    assert_eq!(
        caps.component(&ComponentName::new("payment").unwrap())
            .unwrap()
            .status
            .desired_replicas,
        1
    );

    // Reads of another component are refused too; naming the own component explicitly is fine.
    let (out, _) = run(
        "import acv\ntry:\n    acv.status(component='payment')\nexcept acv.HostError as e:\n    print(e.kind)\nprint(acv.status(component='catalogue')['component'])",
        SafetyMode::Autonomous,
    )
    .await;
    assert_ok(&out);
    assert_eq!(out.stdout, "refused\ncatalogue\n");
}

#[tokio::test]
async fn raising_program_gets_its_traceback_back() {
    let (out, _) = run(
        "def f(x):\n    raise ValueError(f'boom {x}')\n\nf(7)\n",
        SafetyMode::Observe,
    )
    .await;
    let tb = traceback(&out);
    assert!(tb.starts_with("Traceback (most recent call last):"), "{tb}");
    assert!(tb.contains("File \"<program>\", line 4"), "{tb}");
    assert!(
        tb.contains("raise ValueError(f'boom {x}')"),
        "source lines are shown: {tb}"
    );
    assert!(tb.trim_end().ends_with("ValueError: boom 7"), "{tb}");
    assert!(!tb.contains("acv_guest"), "wrapper frames are hidden: {tb}");

    let (out, _) = run("x = (", SafetyMode::Observe).await;
    assert!(traceback(&out).contains("SyntaxError"), "{}", traceback(&out));

    let (out, _) = run("import sys\n", SafetyMode::Observe).await;
    assert!(matches!(out.verdict, Verdict::GuestError { .. }));
}

#[tokio::test]
async fn mutating_call_in_observe_mode_is_refused_with_a_reason_and_runs_in_autonomous_mode() {
    let (out, caps) = run("import acv\nacv.scale(4)", SafetyMode::Observe).await;
    match &out.verdict {
        Verdict::Refused { reason, .. } => assert!(reason.contains("observe mode"), "{reason}"),
        other => panic!("expected refused, got {other:?}"),
    }
    assert!(!caps.calls().contains(&"scale".to_string()));
    assert_eq!(caps.component(&own()).unwrap().status.desired_replicas, 2);
    assert!(!out.mutated(), "a refused call changed nothing");

    let (out, caps) = run(
        "import acv\nprint(acv.scale(4)['desired_replicas'])",
        SafetyMode::Autonomous,
    )
    .await;
    assert_ok(&out);
    assert_eq!(out.stdout, "4\n");
    assert_eq!(caps.component(&own()).unwrap().status.desired_replicas, 4);
    assert!(out.mutated());

    // Text that merely mentions a mutating call does not count; a call rejected before running does not either.
    let (out, _) = run(
        "import acv\nprint('acv.scale(3)')\ntry:\n    acv.scale(-1)\nexcept acv.HostError as e:\n    print(e.kind)",
        SafetyMode::Autonomous,
    )
    .await;
    assert_ok(&out);
    assert_eq!(out.stdout, "acv.scale(3)\ninvalid_argument\n");
    assert!(!out.mutated());
}

#[tokio::test]
async fn approve_mode_queues_mutating_calls_for_the_caller() {
    let program = r#"
import acv
for fn, args in ((acv.set_env, ("LOG_LEVEL", "debug")), (acv.restart, ())):
    try:
        fn(*args)
    except acv.HostError as e:
        print(e.kind)
print(acv.status()["revision"])
"#;
    let (out, caps) = run(program, SafetyMode::Approve).await;
    assert_ok(&out);
    assert_eq!(out.stdout, "approval_required\napproval_required\n1\n");
    assert_eq!(caps.calls(), ["status"]);
    assert!(!out.mutated(), "queued calls have not run");
    assert_eq!(out.pending.len(), 2);
    assert_eq!(
        out.pending[0].call,
        HostCall::SetEnv {
            key: "LOG_LEVEL".into(),
            value: "debug".into()
        }
    );
    assert!(matches!(
        out.calls[out.pending[1].seq as usize].outcome,
        CallOutcome::PendingApproval
    ));

    // Once approved, the caller executes the queued call itself.
    let rev = out.pending[0].call.execute(caps.as_ref(), &own()).await.unwrap();
    assert_eq!(rev["env"]["LOG_LEVEL"], "debug");
    assert_eq!(caps.component(&own()).unwrap().status.revision, 2);
}

#[tokio::test]
async fn arguments_are_checked_by_the_host() {
    let program = r#"
import acv
for call in (lambda: acv.scale(-1), lambda: acv.scale(10**6), lambda: acv.set_env("BAD KEY", "x"),
             lambda: acv.report("MAYBE", "x"), lambda: acv.ask_peer("catalogue", "hi"), lambda: acv.scale("3"),
             lambda: acv.rollback()):
    try:
        call()
        print("ran")
    except acv.HostError as e:
        print(e.kind)
"#;
    let (out, caps) = run(program, SafetyMode::Autonomous).await;
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "invalid_argument\ninvalid_argument\ninvalid_argument\ninvalid_argument\ninvalid_argument\ninvalid_argument\nnot_found\n"
    );
    assert_eq!(
        caps.calls(),
        ["rollback"],
        "only the valid call reached the backend"
    );
}

#[tokio::test]
async fn ask_peer_reaches_other_components_agent() {
    let caps = cluster();
    caps.set_peer_answer(&ComponentName::new("payment").unwrap(), "payment is healthy");
    let out = run_with(
        "import acv\nprint(acv.ask_peer('payment', 'are you ok?'))",
        SafetyMode::Observe,
        Arc::clone(&caps),
        Limits::default(),
    )
    .await;
    assert_ok(&out);
    assert_eq!(out.stdout, "payment is healthy\n");
}

#[tokio::test]
async fn output_and_host_calls_are_capped() {
    let limits = Limits {
        max_output_bytes: 1000,
        max_host_calls: 5,
        ..Limits::default()
    };
    let program = r#"
import acv
print("x" * 100_000)
kinds = []
for _ in range(8):
    try:
        acv.status()
        kinds.append("ok")
    except acv.HostError as e:
        kinds.append(e.kind)
import json
try:
    acv.report("RESPONSE", json.dumps(kinds))
except acv.HostError:
    pass
"#;
    let out = run_with(program, SafetyMode::Observe, cluster(), limits).await;
    assert_ok(&out);
    assert!(out.output_truncated);
    assert_eq!(out.stdout.len(), 1000);
    assert_eq!(out.calls.len(), 5, "records are bounded by the limit");
    assert_eq!(
        out.calls_over_limit, 4,
        "3 status calls and the report went over the limit"
    );
    assert!(out.report.is_none(), "the report itself was over the limit");
}

#[tokio::test]
async fn host_survives_every_violation_and_the_next_run_works() {
    let short = Limits {
        fuel: 200_000_000,
        wall_clock: Duration::from_secs(2),
        ..Limits::default()
    };
    for program in [
        "while True: pass",
        "bytearray(1 << 30)",
        "raise SystemExit(3)",
        "import acv\nacv.restart(component='payment')",
        "def f(): f()\nf()",
    ] {
        let out = run_with(program, SafetyMode::Observe, cluster(), short.clone()).await;
        assert!(!out.verdict.is_ok(), "{program}: {:?}", out.verdict);
    }
    let (out, _) = run("import acv\nprint(acv.status()['image'])", SafetyMode::Observe).await;
    assert_ok(&out);
    assert_eq!(out.stdout, "catalogue:1.0\n");
}

#[tokio::test]
async fn on_demand_allocator_enforces_the_same_limits() {
    let config = acv_sandbox::dev::checkout_config().unwrap().without_pooling();
    let sandbox = Sandbox::new(config).unwrap();
    let limits = Limits {
        fuel: 300_000_000,
        ..Limits::default()
    };
    let run = |program: &'static str| {
        let (sandbox, limits) = (sandbox.clone(), limits.clone());
        async move {
            sandbox
                .run(program, &own(), SafetyMode::Observe, cluster(), limits)
                .await
                .unwrap()
        }
    };
    let ok = run("import acv\nprint(acv.status()['desired_replicas'])").await;
    assert_ok(&ok);
    assert_eq!(ok.stdout, "2\n");
    assert_eq!(run("bytearray(1 << 30)").await.verdict, Verdict::MemoryLimit);
    assert_eq!(run("while True: pass").await.verdict, Verdict::OutOfFuel);
    assert_ok(&run("print('still fine')").await);
}

#[tokio::test]
async fn runs_beyond_the_pool_wait_for_a_slot() {
    let config = acv_sandbox::dev::checkout_config().unwrap().with_pooling(1);
    let sandbox = Sandbox::new(config).unwrap();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let sandbox = sandbox.clone();
        tasks.push(tokio::spawn(async move {
            let program = format!("print({i} * 2)");
            sandbox
                .run(
                    &program,
                    &own(),
                    SafetyMode::Observe,
                    cluster(),
                    Limits::default(),
                )
                .await
                .unwrap()
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let out = task.await.unwrap();
        assert_ok(&out);
        assert_eq!(out.stdout, format!("{}\n", i * 2));
    }
}

#[tokio::test]
async fn limits_are_validated() {
    let err = sandbox()
        .run(
            "pass",
            &own(),
            SafetyMode::Observe,
            cluster(),
            Limits {
                memory_bytes: 1 << 20,
                ..Limits::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, acv_sandbox::SandboxError::InvalidLimits(_)),
        "{err}"
    );
}

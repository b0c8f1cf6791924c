//! `LazySandbox` against the real guest: nothing loaded before the first run, one load for concurrent first runs,
//! released after the idle period (never while a run is in progress), and the next run after a release loads it
//! again and works.

use std::sync::Arc;
use std::time::Duration;

use acv_protocol::ComponentName;
use acv_sandbox::fake::FakeCluster;
use acv_sandbox::{LazySandbox, Limits, SafetyMode, Verdict};

fn own() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

async fn run(sandbox: &LazySandbox, caps: Arc<FakeCluster>) -> String {
    let out = sandbox
        .run(
            "import acv\nprint(acv.status()['desired_replicas'])",
            &own(),
            SafetyMode::Observe,
            caps,
            Limits::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.verdict, Verdict::Ok, "{}", out.stderr);
    out.stdout
}

/// Waits (bounded) until the idle timer released the sandbox.
async fn until_released(sandbox: &LazySandbox) {
    for _ in 0..600 {
        if !sandbox.stats().loaded {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not released: {:?}", sandbox.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_on_first_use_releases_when_idle_and_loads_again() {
    let config = acv_sandbox::dev::checkout_config().unwrap();
    let sandbox = LazySandbox::new(config, Some(Duration::from_millis(200)));
    let caps = Arc::new(FakeCluster::with_component(&own()));
    assert!(!sandbox.stats().loaded);

    // Two first runs at once load the guest once.
    let (a, b) = tokio::join!(run(&sandbox, caps.clone()), run(&sandbox, caps.clone()));
    assert_eq!((a.as_str(), b.as_str()), ("2\n", "2\n"));
    let stats = sandbox.stats();
    assert_eq!((stats.loads, stats.active), (1, 0), "{stats:?}");

    until_released(&sandbox).await;
    assert_eq!(sandbox.stats().unloads, 1);

    // The next run after the release loads it again and works.
    assert_eq!(run(&sandbox, caps.clone()).await, "2\n");
    let stats = sandbox.stats();
    assert_eq!((stats.loads, stats.unloads), (2, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_released_while_a_run_is_in_progress() {
    let config = acv_sandbox::dev::checkout_config().unwrap();
    let sandbox = Arc::new(LazySandbox::new(config, None));
    // Each host call takes 400 ms, so the run is still going when we try to release.
    let slow = Arc::new(FakeCluster::with_component(&own()).with_delay(Duration::from_millis(400)));
    let running = {
        let sandbox = Arc::clone(&sandbox);
        tokio::spawn(async move { run(&sandbox, slow).await })
    };
    for _ in 0..3000 {
        if sandbox.stats().active == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sandbox.stats().active, 1);
    assert!(!sandbox.unload_if_idle(), "a run is in progress");
    assert_eq!(running.await.unwrap(), "2\n");
    assert!(sandbox.stats().loaded, "no idle period configured: stays loaded");
    assert!(sandbox.unload_if_idle());
    assert!(!sandbox.stats().loaded);
    assert_eq!(sandbox.stats().unloads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_guest_is_a_clear_error_at_the_first_run() {
    let missing = std::env::temp_dir().join(format!("acv-missing-guest-{}.wasm", std::process::id()));
    let sandbox = LazySandbox::new(acv_sandbox::SandboxConfig::new(&missing), None);
    let err = sandbox
        .run(
            "print(1)",
            &own(),
            SafetyMode::Observe,
            Arc::new(FakeCluster::new()),
            Limits::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
    assert!(!sandbox.stats().loaded);
    assert_eq!(sandbox.stats().active, 0);
}

//! Faults behave as Chaos Mesh's do under a label selector: they hit the pods selected at injection (mode one /
//! all / fixed / fixed-percent), end with their duration, and pods created later (scale-out, restart, rollout) are
//! clean. Real `acv-shop` processes on the local runtime; the CPU tests take turns so they do not disturb each
//! other's figures.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use acv_cluster::{Cluster, Fault, RemoteCluster, Selector};
use acv_protocol::{ComponentName, ReplicaState};
use acv_runtime::LocalRuntime;
use common::{eventually, get, shop_spec, shutdown_and_check_no_leaks, start};
use tokio::sync::Mutex;

static TURN: Mutex<()> = Mutex::const_new(());

async fn catalogue_with(replicas: u32) -> LocalRuntime {
    let rt = start(shop_spec(&["catalogue"])).await;
    rt.cluster("catalogue")
        .unwrap()
        .scale(i64::from(replicas))
        .await
        .unwrap();
    rt.wait_ready("catalogue", replicas, Duration::from_secs(30))
        .await
        .unwrap();
    rt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_mode_one_leaves_the_others_serving_and_scale_out_adds_healthy_pods() {
    let rt = catalogue_with(3).await;
    let cat = rt.cluster("catalogue").unwrap();
    let front = rt.addr("catalogue").unwrap();

    let f = rt
        .inject_selected(
            "catalogue",
            Fault::PodFailure,
            Selector::ONE,
            Some(Duration::from_secs(120)),
        )
        .unwrap();
    assert_eq!(f.targets.len(), 1, "{f:?}");
    let victim = f.targets[0].pod.clone();
    assert!(!f.targets[0].replaced);
    let s = eventually(10, "one pod down", || async {
        let s = cat.status().await.unwrap();
        (s.ready_replicas == 2).then_some(s)
    })
    .await;
    for r in &s.replicas {
        let want = if r.name == victim {
            ReplicaState::NotReady
        } else {
            ReplicaState::Ready
        };
        assert_eq!(r.state, want, "{s:?}");
    }
    // The service keeps answering through its front.
    for _ in 0..30 {
        assert_eq!(get(front, "/catalogue").await.0, 200);
    }
    // It stays down (nothing restarts it) while the fault lasts: a few reconcile passes later, still 2 ready.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = cat.status().await.unwrap();
    assert_eq!(s.ready_replicas, 2, "{s:?}");

    // Scale-out during the fault: the new pods are clean.
    cat.scale(5).await.unwrap();
    let s = eventually(30, "two new ready pods", || async {
        let s = cat.status().await.unwrap();
        (s.replicas.len() == 5 && s.ready_replicas == 4).then_some(s)
    })
    .await;
    for name in ["catalogue-3", "catalogue-4"] {
        let r = s.replicas.iter().find(|r| r.name == name).unwrap();
        assert_eq!(r.state, ReplicaState::Ready, "{s:?}");
    }
    let listed = rt.faults("catalogue").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].targets, f.targets, "the selection does not grow");

    // Clearing it brings the failed pod back (same pod, restarted in place).
    let uid = rt
        .replicas("catalogue")
        .unwrap()
        .into_iter()
        .find(|r| r.name == victim)
        .unwrap()
        .uid;
    assert_eq!(rt.clear_faults("catalogue").unwrap(), 1);
    rt.wait_ready("catalogue", 5, Duration::from_secs(30))
        .await
        .unwrap();
    let back = rt
        .replicas("catalogue")
        .unwrap()
        .into_iter()
        .find(|r| r.name == victim)
        .unwrap();
    assert_eq!(back.uid, uid);
    shutdown_and_check_no_leaks(rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_ends_with_its_duration_and_a_rollout_replaces_the_failed_pod() {
    let rt = catalogue_with(2).await;
    let cat = rt.cluster("catalogue").unwrap();

    // Ends by itself.
    let t0 = Instant::now();
    let f = rt
        .inject_selected(
            "catalogue",
            Fault::PodFailure,
            Selector::fixed_percent(50),
            Some(Duration::from_secs(3)),
        )
        .unwrap();
    assert_eq!(f.targets.len(), 1, "50 % of 2 pods: {f:?}");
    let left = f.remaining_secs.unwrap();
    assert!(left > 0.0 && left <= 3.0, "{f:?}");
    eventually(10, "one pod down", || async {
        (cat.status().await.unwrap().ready_replicas == 1).then_some(())
    })
    .await;
    eventually(30, "the fault expired and the pod is back", || async {
        let s = cat.status().await.unwrap();
        (rt.faults("catalogue").unwrap().is_empty() && s.ready_replicas == 2).then_some(())
    })
    .await;
    println!(
        "3 s pod failure: both pods ready again {:.1} s after injection",
        t0.elapsed().as_secs_f64()
    );
    let logs = cat.logs(200).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.contains(&format!("fault {} expired", f.id.0))),
        "{logs:#?}"
    );

    // A rollout during a pod failure replaces the failed pod with a clean one, which serves.
    let f = rt
        .inject_selected(
            "catalogue",
            Fault::PodFailure,
            Selector::ALL,
            Some(Duration::from_secs(120)),
        )
        .unwrap();
    assert_eq!(f.targets.len(), 2);
    eventually(10, "both pods down", || async {
        (cat.status().await.unwrap().ready_replicas == 0).then_some(())
    })
    .await;
    assert_eq!(get(rt.addr("catalogue").unwrap(), "/catalogue").await.0, 503);
    cat.set_image("weaveworksdemos/catalogue:0.3.4").await.unwrap();
    rt.wait_ready("catalogue", 2, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(get(rt.addr("catalogue").unwrap(), "/catalogue").await.0, 200);
    let listed = rt.faults("catalogue").unwrap();
    assert_eq!(listed.len(), 1, "the fault lasts its duration");
    assert!(listed[0].targets.iter().all(|t| t.replaced), "{listed:?}");
    shutdown_and_check_no_leaks(rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_rollout_during_cpu_stress_yield_clean_pods() {
    let _turn = TURN.lock().await;
    let rt = catalogue_with(2).await;
    let cat = rt.cluster("catalogue").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = cat.metrics(1.5).await.unwrap().cpu_percent_of_limit.unwrap();

    // The paper's StressChaos on every pod.
    let stress = Fault::CpuStress {
        workers: 2,
        load_percent: 50,
    };
    let f = rt
        .inject_selected("catalogue", stress, Selector::ALL, Some(Duration::from_secs(120)))
        .unwrap();
    assert_eq!(f.targets.len(), 2);
    let stressors: Vec<u32> = eventually(10, "a stressor per pod", || async {
        let r = rt.replicas("catalogue").unwrap();
        r.iter()
            .all(|r| r.stressor_pids.len() == 1)
            .then(|| r.iter().flat_map(|r| r.stressor_pids.clone()).collect())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hot = cat.metrics(2.5).await.unwrap().cpu_percent_of_limit.unwrap();

    // Restart replaces every pod; the new ones carry no stressor although the fault is still in force.
    let old_uids: Vec<u64> = rt.replicas("catalogue").unwrap().iter().map(|r| r.uid).collect();
    cat.restart().await.unwrap();
    eventually(30, "two new ready pods", || async {
        let r = rt.replicas("catalogue").unwrap();
        (r.len() == 2 && r.iter().all(|r| r.ready && !old_uids.contains(&r.uid))).then_some(())
    })
    .await;
    eventually(10, "old stressors gone", || async {
        stressors
            .iter()
            .all(|p| !acv_runtime::procfs::is_alive(*p))
            .then_some(())
    })
    .await;
    assert!(
        rt.replicas("catalogue")
            .unwrap()
            .iter()
            .all(|r| r.stressor_pids.is_empty())
    );
    let listed = rt.faults("catalogue").unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].targets.iter().all(|t| t.replaced), "{listed:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = cat.metrics(2.5).await.unwrap().cpu_percent_of_limit.unwrap();
    println!("cpu % of limit: idle {idle:.1}, stressed {hot:.1}, after restart {after:.1}");
    assert!(hot >= idle + 50.0, "idle {idle:.1} -> stressed {hot:.1}");
    assert!(after <= idle + 25.0, "idle {idle:.1}, after restart {after:.1}");

    // Stress on one pod (mode one), then a rollout: the new pods are clean too.
    let f = rt
        .inject_selected("catalogue", stress, Selector::ONE, Some(Duration::from_secs(120)))
        .unwrap();
    assert_eq!(f.targets.len(), 1);
    let victim = f.targets[0].pod.clone();
    eventually(10, "one stressor", || async {
        let r = rt.replicas("catalogue").unwrap();
        let with: Vec<_> = r.iter().filter(|r| !r.stressor_pids.is_empty()).collect();
        (with.len() == 1 && with[0].name == victim).then_some(())
    })
    .await;
    let old_uids: Vec<u64> = rt.replicas("catalogue").unwrap().iter().map(|r| r.uid).collect();
    cat.set_image("weaveworksdemos/catalogue:0.3.4").await.unwrap();
    eventually(30, "the rollout done with clean pods", || async {
        let r = rt.replicas("catalogue").unwrap();
        (r.len() == 2
            && r.iter()
                .all(|r| r.ready && !old_uids.contains(&r.uid) && r.stressor_pids.is_empty()))
        .then_some(())
    })
    .await;
    shutdown_and_check_no_leaks(rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_memory_faults_hit_only_the_selected_pods() {
    let rt = catalogue_with(2).await;
    let front = rt.addr("catalogue").unwrap();

    let f = rt
        .inject_selected("catalogue", Fault::Latency { ms: 250 }, Selector::ONE, None)
        .unwrap();
    assert_eq!(f.targets.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Round robin over 2 pods: about half the requests go to the delayed one.
    let mut slow = 0;
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(get(front, "/catalogue").await.0, 200);
        if t.elapsed() >= Duration::from_millis(250) {
            slow += 1;
        }
    }
    println!("latency on one of two pods: {slow} of 10 requests delayed");
    assert!((3..=7).contains(&slow), "{slow} of 10 delayed");
    assert_eq!(rt.clear_faults("catalogue").unwrap(), 1);

    let f = rt
        .inject_selected(
            "catalogue",
            Fault::MemoryStress { mib: 16 },
            Selector::fixed(1),
            None,
        )
        .unwrap();
    let victim = f.targets[0].pod.clone();
    eventually(10, "one memory hog", || async {
        let r = rt.replicas("catalogue").unwrap();
        let with: Vec<_> = r.iter().filter(|r| !r.stressor_pids.is_empty()).collect();
        (with.len() == 1 && with[0].name == victim).then_some(())
    })
    .await;
    shutdown_and_check_no_leaks(rt).await;
}

/// POSTs `body` to the control API; status code and body.
async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = hyper::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_over_the_control_api_and_bad_input() {
    let rt = Arc::new(catalogue_with(3).await);
    let api = rt.serve_api("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let path = "/v1/components/catalogue/faults";

    for (body, why) in [
        (r#"{"kind":"pod_failure","mode":"some"}"#, "unknown mode"),
        (
            r#"{"kind":"pod_failure","mode":"fixed-percent","value":101}"#,
            "percent > 100",
        ),
        (
            r#"{"kind":"pod_failure","mode":"fixed-percent","value":0}"#,
            "percent 0",
        ),
        (
            r#"{"kind":"pod_failure","mode":"fixed-percent"}"#,
            "percent missing",
        ),
        (
            r#"{"kind":"pod_failure","mode":"fixed-percent","value":"50"}"#,
            "value as a string",
        ),
        (
            r#"{"kind":"pod_failure","mode":"fixed-percent","value":10}"#,
            "selects no pod of 3",
        ),
        (
            r#"{"kind":"pod_failure","mode":"one","value":1}"#,
            "value with mode one",
        ),
        (
            r#"{"kind":"pod_failure","mode":"fixed","value":-1}"#,
            "negative count",
        ),
    ] {
        let (status, text) = post(api, path, body).await;
        assert_eq!(status, 400, "{why}: {text}");
        assert!(text.contains("\"kind\":\"invalid_argument\""), "{why}: {text}");
    }
    assert!(
        rt.faults("catalogue").unwrap().is_empty(),
        "bad input injects nothing"
    );

    // A good one answers the selection.
    let (status, text) = post(
        api,
        path,
        r#"{"kind":"latency","ms":5,"mode":"fixed-percent","value":67,"duration_secs":60}"#,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["targets"].as_array().unwrap().len(), 2, "67 % of 3 pods: {v}");
    assert_eq!(v["selector"]["mode"], "fixed-percent");

    // And RemoteCluster sees the same.
    let remote = RemoteCluster::new(api, ComponentName::new("catalogue").unwrap()).unwrap();
    let f = remote
        .inject_selected(Fault::Latency { ms: 5 }, Selector::fixed(3), None)
        .await
        .unwrap();
    assert_eq!(f.targets.len(), 3);
    let listed = remote.faults().await.unwrap();
    assert_eq!(listed.len(), 2);
    let e = remote
        .inject_selected(Fault::PodFailure, Selector::fixed_percent(150), None)
        .await
        .unwrap_err();
    assert!(e.is_bad_input(), "{e}");
    assert_eq!(remote.clear_faults().await.unwrap(), 2);
    let rt = Arc::try_unwrap(rt).unwrap_or_else(|_| panic!("runtime still shared"));
    shutdown_and_check_no_leaks(rt).await;
}

//! `manifests/` without a cluster: every YAML document parses into its typed object (k8s-openapi, the Goal CRD's
//! own type, or local types for cert-manager and Chaos Mesh) and serialises back to the same JSON (so a misspelt
//! field fails); the committed CRD is what the Rust types generate; each overlay renders (kustomize subset) with
//! resolvable references and consistent names, labels and selectors; and the Containerfiles are multi-stage and
//! non-root. Least privilege has its own test file (`rbac.rs`).

#[path = "support/kustomize.rs"]
mod kustomize;
#[path = "support/typed.rs"]
mod typed;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kustomize::{Object, documents, render};
use serde_json::Value;

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_manifest_parses_into_its_typed_object() {
    let mut files = Vec::new();
    yaml_files(&manifests(), &mut files);
    files.sort();
    assert!(files.len() > 15, "found only {files:?}");
    // Files used as patches are JSON 6902 operation lists, not objects.
    let mut patch_files = BTreeSet::new();
    for f in files.iter().filter(|f| f.ends_with("kustomization.yaml")) {
        let k = kustomize::read_kustomization(f.parent().unwrap()).unwrap();
        for p in &k.patches {
            patch_files.insert(f.parent().unwrap().join(&p.path).canonicalize().unwrap());
        }
    }
    let mut kinds = BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for f in &files {
        if f.ends_with("kustomization.yaml") {
            continue;
        }
        if patch_files.contains(&f.canonicalize().unwrap()) {
            for doc in documents(f).unwrap() {
                if let Err(e) = serde_json::from_value::<json_patch::Patch>(doc) {
                    failures.push(format!("{}: not a JSON patch: {e}", f.display()));
                }
            }
            continue;
        }
        for doc in documents(f).unwrap() {
            let kind = doc["kind"].as_str().unwrap_or("<none>").to_owned();
            match typed::check(&doc) {
                Ok(()) => *kinds.entry(kind).or_default() += 1,
                Err(e) => failures.push(format!("{}: {kind}: {e}", f.display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "Deployment",
        "StatefulSet",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "PodChaos",
        "StressChaos",
        "Job",
        "Goal",
        "Certificate",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} in manifests/: {kinds:?}");
    }
}

#[test]
fn the_typed_check_catches_misspelt_fields_and_unknown_kinds() {
    let ok: Value = serde_yaml::from_str(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {selector: {a: b}, ports: [{port: 80}]}",
    )
    .unwrap();
    typed::check(&ok).unwrap();
    let misspelt: Value = serde_yaml::from_str(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {selectr: {a: b}, ports: [{port: 80}]}",
    )
    .unwrap();
    let err = typed::check(&misspelt).unwrap_err();
    assert!(err.contains("selectr"), "{err}");
    let unknown: Value = serde_yaml::from_str("apiVersion: x/v1\nkind: Gizmo\nmetadata: {name: a}").unwrap();
    assert!(typed::check(&unknown).is_err());
    let chaos: Value = serde_yaml::from_str(
        "apiVersion: chaos-mesh.org/v1alpha1\nkind: StressChaos\nmetadata: {name: a}\n\
         spec: {mode: all, selector: {namespaces: [x]}, stressors: {cpu: {workers: 2, lode: 50}}}",
    )
    .unwrap();
    assert!(typed::check(&chaos).is_err());
}

#[test]
fn the_committed_crd_is_what_the_types_generate() {
    let path = manifests().join("base/crd/goals.acv.dev.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = acv_kube::crd::crd_yaml().unwrap();
    assert!(
        committed == generated,
        "{} is stale: run `cargo run -p acv-kube --bin crdgen > manifests/base/crd/goals.acv.dev.yaml`",
        path.display()
    );
}

/// Renders `dir` and checks it; returns the objects.
fn rendered(dir: &str) -> Vec<Object> {
    let objects = render(&manifests().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
    assert!(!objects.is_empty(), "{dir} renders nothing");
    let problems = consistency(&objects);
    assert!(problems.is_empty(), "{dir}:\n{}", problems.join("\n"));
    objects
}

fn find<'a>(objects: &'a [Object], kind: &str, ns: Option<&str>, name: &str) -> Option<&'a Object> {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name && (ns.is_none() || o.namespace() == ns))
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

/// Pod templates of workloads: (kind, namespace, name, template).
fn templates(objects: &[Object]) -> Vec<(&Object, &Value)> {
    objects
        .iter()
        .filter(|o| matches!(o.kind(), "Deployment" | "StatefulSet" | "Job"))
        .map(|o| (o, &o.value["spec"]["template"]))
        .collect()
}

/// Reference and label checks across one rendering.
fn consistency(objects: &[Object]) -> Vec<String> {
    let mut problems = Vec::new();
    for o in objects {
        if !kustomize::CLUSTER_SCOPED.contains(&o.kind()) && o.namespace().is_none() {
            problems.push(format!("{} {} has no namespace", o.kind(), o.name()));
        }
        if let Some(ns) = o.namespace()
            && o.kind() != "Namespace"
            && find(objects, "Namespace", None, ns).is_none()
            && !["acv-system", "acv-shop"].contains(&ns)
        {
            problems.push(format!("{} {} is in unknown namespace {ns}", o.kind(), o.name()));
        }
    }
    for (w, t) in templates(objects) {
        let ns = w.namespace();
        let tl = labels(&t["metadata"]["labels"]);
        let sel = labels(&w.value["spec"]["selector"]["matchLabels"]);
        if w.kind() != "Job" && (sel.is_empty() || !subset(&sel, &tl)) {
            problems.push(format!(
                "{} {}: selector {sel:?} does not match its template labels {tl:?}",
                w.kind(),
                w.name()
            ));
        }
        let spec = &t["spec"];
        if let Some(sa) = spec["serviceAccountName"].as_str()
            && find(objects, "ServiceAccount", ns, sa).is_none()
        {
            problems.push(format!(
                "{} {}: ServiceAccount {sa} not found",
                w.kind(),
                w.name()
            ));
        }
        for v in spec["volumes"].as_array().into_iter().flatten() {
            if let Some(cm) = v["configMap"]["name"].as_str()
                && find(objects, "ConfigMap", ns, cm).is_none()
            {
                problems.push(format!("{} {}: ConfigMap {cm} not found", w.kind(), w.name()));
            }
            if let Some(pvc) = v["persistentVolumeClaim"]["claimName"].as_str()
                && find(objects, "PersistentVolumeClaim", ns, pvc).is_none()
            {
                problems.push(format!(
                    "{} {}: PersistentVolumeClaim {pvc} not found",
                    w.kind(),
                    w.name()
                ));
            }
            if let Some(secret) = v["secret"]["secretName"].as_str() {
                let issued = objects.iter().any(|c| {
                    c.kind() == "Certificate"
                        && c.namespace() == ns
                        && c.value["spec"]["secretName"] == secret
                });
                if !issued {
                    problems.push(format!(
                        "{} {}: Secret {secret} is issued by no Certificate",
                        w.kind(),
                        w.name()
                    ));
                }
            }
        }
        let volumes: BTreeSet<&str> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .chain(
                w.value["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["metadata"]["name"].as_str()),
            )
            .collect();
        for c in spec["containers"].as_array().into_iter().flatten() {
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let name = m["name"].as_str().unwrap_or_default();
                if !volumes.contains(name) {
                    problems.push(format!(
                        "{} {}: mount of unknown volume {name}",
                        w.kind(),
                        w.name()
                    ));
                }
            }
            for e in c["env"].as_array().into_iter().flatten() {
                if let Some(secret) = e["valueFrom"]["secretKeyRef"]["name"].as_str()
                    && secret != "acv-manager-token"
                {
                    problems.push(format!(
                        "{} {}: env from Secret {secret}, which the install does not create",
                        w.kind(),
                        w.name()
                    ));
                }
            }
        }
        if w.kind() == "StatefulSet" {
            let svc = w.value["spec"]["serviceName"].as_str().unwrap_or_default();
            if find(objects, "Service", ns, svc).is_none() {
                problems.push(format!("StatefulSet {}: serviceName {svc} not found", w.name()));
            }
        }
    }
    for s in objects.iter().filter(|o| o.kind() == "Service") {
        let sel = labels(&s.value["spec"]["selector"]);
        let backends: Vec<_> = templates(objects)
            .into_iter()
            .filter(|(w, t)| {
                w.namespace() == s.namespace()
                    && !sel.is_empty()
                    && subset(&sel, &labels(&t["metadata"]["labels"]))
            })
            .collect();
        if backends.is_empty() {
            problems.push(format!(
                "Service {}: selector {sel:?} selects no pod template",
                s.name()
            ));
        }
        for p in s.value["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(named) = p["targetPort"].as_str() {
                let exists = backends.iter().any(|(_, t)| {
                    t["spec"]["containers"].as_array().into_iter().flatten().any(|c| {
                        c["ports"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|cp| cp["name"] == named)
                    })
                });
                if !exists {
                    problems.push(format!(
                        "Service {}: targetPort {named} is no container port name",
                        s.name()
                    ));
                }
            }
        }
    }
    for b in objects
        .iter()
        .filter(|o| matches!(o.kind(), "RoleBinding" | "ClusterRoleBinding"))
    {
        let role_kind = b.value["roleRef"]["kind"].as_str().unwrap_or_default();
        let role = b.value["roleRef"]["name"].as_str().unwrap_or_default();
        let ns = if role_kind == "Role" { b.namespace() } else { None };
        if find(objects, role_kind, ns, role).is_none() {
            problems.push(format!("{} {}: {role_kind} {role} not found", b.kind(), b.name()));
        }
        for s in b.value["subjects"].as_array().into_iter().flatten() {
            let (name, ns) = (s["name"].as_str().unwrap_or_default(), s["namespace"].as_str());
            if s["kind"] != "ServiceAccount" || find(objects, "ServiceAccount", ns, name).is_none() {
                problems.push(format!(
                    "{} {}: subject {s} is no ServiceAccount here",
                    b.kind(),
                    b.name()
                ));
            }
        }
    }
    for w in objects
        .iter()
        .filter(|o| o.kind() == "MutatingWebhookConfiguration")
    {
        for hook in w.value["webhooks"].as_array().into_iter().flatten() {
            let svc = &hook["clientConfig"]["service"];
            let (name, ns) = (
                svc["name"].as_str().unwrap_or_default(),
                svc["namespace"].as_str(),
            );
            match find(objects, "Service", ns, name) {
                None => problems.push(format!(
                    "webhook {}: Service {ns:?}/{name} not found",
                    hook["name"]
                )),
                Some(s) => {
                    let port = svc["port"].as_i64().unwrap_or(443);
                    if !s.value["spec"]["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["port"] == port)
                    {
                        problems.push(format!(
                            "webhook {}: Service {name} has no port {port}",
                            hook["name"]
                        ));
                    }
                }
            }
            if hook["failurePolicy"] != "Ignore" {
                problems.push(format!("webhook {}: failurePolicy must be Ignore", hook["name"]));
            }
            if hook["timeoutSeconds"].as_i64().is_none_or(|t| t > 10) {
                problems.push(format!(
                    "webhook {}: timeoutSeconds must be set and small",
                    hook["name"]
                ));
            }
        }
        if let Some(from) = w.value["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].as_str() {
            let (ns, name) = from.split_once('/').unwrap_or(("", from));
            if find(objects, "Certificate", Some(ns), name).is_none() {
                problems.push(format!("webhook CA from {from}: no such Certificate"));
            }
        }
    }
    problems
}

/// The value of env `key` of the manager container.
fn manager_env(objects: &[Object], key: &str) -> Option<String> {
    let m = find(objects, "Deployment", Some("acv-system"), "acv-manager")?;
    m.value["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == key)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

/// `scheme://user@host.ns.svc:port/...` → the Service it names must exist with that port.
fn service_of_url(objects: &[Object], url: &str) -> Result<(), String> {
    let rest = url.split_once("://").ok_or(format!("{url}: no scheme"))?.1;
    let hostport = rest.split('/').next().unwrap_or_default();
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let (host, port) = hostport.rsplit_once(':').ok_or(format!("{url}: no port"))?;
    let mut parts = host.split('.');
    let (name, ns) = (parts.next().unwrap_or_default(), parts.next());
    let svc = find(objects, "Service", ns, name).ok_or(format!("{url}: no Service {name} in {ns:?}"))?;
    let port: i64 = port.parse().map_err(|_| format!("{url}: bad port"))?;
    if svc.value["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["port"] == port)
    {
        Ok(())
    } else {
        Err(format!("{url}: Service {name} has no port {port}"))
    }
}

#[test]
fn each_overlay_renders_with_consistent_references() {
    for (overlay, bus, url_key) in [
        ("overlays/nats", "nats", "ACV_NATS_URL"),
        ("overlays/rabbitmq", "amqp", "ACV_AMQP_URL"),
    ] {
        let objects = rendered(overlay);
        for (kind, name) in [
            ("Namespace", "acv-system"),
            ("CustomResourceDefinition", "goals.acv.dev"),
            ("Deployment", "acv-manager"),
            ("MutatingWebhookConfiguration", "acv-sidecar-injector"),
            ("ClusterRole", "acv-manager"),
        ] {
            assert!(
                find(&objects, kind, None, name).is_some(),
                "{overlay}: no {kind} {name}"
            );
        }
        assert_eq!(
            manager_env(&objects, "ACV_BUS").as_deref(),
            Some(bus),
            "{overlay}"
        );
        let url = manager_env(&objects, url_key).unwrap_or_else(|| panic!("{overlay}: no {url_key}"));
        service_of_url(&objects, &url).unwrap();
        let inject = manager_env(&objects, "ACV_MANAGER_INJECT_ENV").unwrap();
        assert!(
            inject.contains(&format!("ACV_BUS={bus}")) && inject.contains(&format!("{url_key}={url}")),
            "{inject}"
        );
        // The other bus is not installed.
        let other = if bus == "nats" { "rabbitmq" } else { "nats" };
        assert!(
            find(&objects, "StatefulSet", None, other).is_none(),
            "{overlay} installs {other}"
        );
        for o in &objects {
            assert_eq!(
                o.value["metadata"]["labels"]["app.kubernetes.io/part-of"],
                "acv",
                "{overlay}: {} {} lacks the part-of label",
                o.kind(),
                o.name()
            );
        }
    }
}

/// Does a label selector (matchLabels / matchExpressions In, NotIn, Exists, DoesNotExist) match `labels`?
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let ml = self::labels(&selector["matchLabels"]);
    if !subset(&ml, labels) {
        return false;
    }
    selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let v = labels.get(key).map(String::as_str);
            match e["operator"].as_str().unwrap_or_default() {
                "In" => v.is_some_and(|v| values.contains(&v)),
                "NotIn" => v.is_none_or(|v| !values.contains(&v)),
                "Exists" => v.is_some(),
                "DoesNotExist" => v.is_none(),
                _ => false,
            }
        })
}

#[test]
fn the_shop_opts_in_and_the_rest_is_never_sent_to_the_webhook() {
    let control = rendered("overlays/nats");
    let shop = rendered("shop");
    let webhook = find(
        &control,
        "MutatingWebhookConfiguration",
        None,
        "acv-sidecar-injector",
    )
    .unwrap();
    let hooks = webhook.value["webhooks"].as_array().unwrap();
    let ns_labels = |o: &Object| {
        let mut l = labels(&o.value["metadata"]["labels"]);
        l.insert("kubernetes.io/metadata.name".into(), o.name().into());
        l
    };
    // Which hooks see a pod with `pod_labels` in namespace `ns`.
    let hooks_for = |ns: &BTreeMap<String, String>, pod: &BTreeMap<String, String>| {
        hooks
            .iter()
            .filter(|h| selects(&h["namespaceSelector"], ns) && selects(&h["objectSelector"], pod))
            .count()
    };
    let shop_ns = ns_labels(find(&shop, "Namespace", None, "acv-shop").unwrap());
    let system_ns = ns_labels(find(&control, "Namespace", None, "acv-system").unwrap());
    let plain_ns = BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), "default".to_owned())]);
    let kube_system = BTreeMap::from([
        ("kubernetes.io/metadata.name".to_owned(), "kube-system".to_owned()),
        ("acv.dev/inject".to_owned(), "enabled".to_owned()),
    ]);
    let opted_in = BTreeMap::from([("acv.dev/inject".to_owned(), "enabled".to_owned())]);
    let opted_out = BTreeMap::from([("acv.dev/inject".to_owned(), "disabled".to_owned())]);
    for (_, t) in templates(&shop) {
        let pod = labels(&t["metadata"]["labels"]);
        let expected = usize::from(pod.get("acv.dev/inject").map(String::as_str) != Some("disabled"));
        assert_eq!(hooks_for(&shop_ns, &pod), expected, "shop pod {pod:?}");
    }
    assert_eq!(hooks_for(&shop_ns, &opted_out), 0);
    assert_eq!(
        hooks_for(&system_ns, &opted_in),
        0,
        "the control plane is never injected"
    );
    assert_eq!(hooks_for(&kube_system, &opted_in), 0);
    assert_eq!(
        hooks_for(&plain_ns, &BTreeMap::new()),
        0,
        "services that did not opt in never reach the webhook"
    );
    assert_eq!(hooks_for(&plain_ns, &opted_in), 1, "a single pod can opt in");
    // Each shop Deployment names its component and its sidecar's account.
    for (w, t) in templates(&shop)
        .into_iter()
        .filter(|(w, _)| w.kind() == "Deployment")
    {
        assert_eq!(t["metadata"]["annotations"]["acv.dev/component"], w.name());
        assert_eq!(t["spec"]["serviceAccountName"], format!("{}-acv", w.name()));
        assert_eq!(t["spec"]["automountServiceAccountToken"], false);
    }
}

#[test]
fn chaos_experiments_and_the_example_goal_target_the_shop() {
    let shop = rendered("shop");
    let chaos = rendered("chaos");
    let deployments: Vec<_> = templates(&shop)
        .into_iter()
        .filter(|(w, _)| w.kind() == "Deployment")
        .collect();
    for c in chaos.iter().filter(|o| o.group() == "chaos-mesh.org") {
        let sel = labels(&c.value["spec"]["selector"]["labelSelectors"]);
        let matched: Vec<_> = deployments
            .iter()
            .filter(|(_, t)| subset(&sel, &labels(&t["metadata"]["labels"])))
            .collect();
        assert!(
            !matched.is_empty(),
            "{} {} selects no shop pod",
            c.kind(),
            c.name()
        );
        for name in c.value["spec"]["containerNames"].as_array().into_iter().flatten() {
            assert!(
                matched.iter().any(|(_, t)| t["spec"]["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| &x["name"] == name)),
                "{}: no container {name}",
                c.name()
            );
        }
    }
    let stress = find(&chaos, "StressChaos", None, "catalogue-cpu-stress").unwrap();
    assert_eq!(stress.value["spec"]["stressors"]["cpu"]["workers"], 2);
    assert_eq!(stress.value["spec"]["stressors"]["cpu"]["load"], 50);
    assert_eq!(
        find(&chaos, "PodChaos", None, "catalogue-pod-failure")
            .unwrap()
            .value["spec"]["action"],
        "pod-failure"
    );
    let job = find(&chaos, "Job", None, "workload-increase").unwrap();
    assert!(job.value.to_string().contains("FRONT_END_SERVICE_HOST"));
    assert!(find(&shop, "Service", Some("acv-shop"), "front-end").is_some());

    let examples = rendered("examples");
    let goal: acv_kube::crd::Goal = serde_json::from_value(examples[0].value.clone()).unwrap();
    let resource = goal.to_resource();
    resource.validate().unwrap();
    for o in &goal.spec.goal.objectives {
        for c in &o.components {
            assert!(
                find(&shop, "Deployment", Some("acv-shop"), c.as_str()).is_some(),
                "no component {c}"
            );
        }
    }
    // The same file is an acvctl goal file.
    let file: acv_protocol::GoalResource =
        serde_yaml::from_str(&std::fs::read_to_string(manifests().join("examples/goal.yaml")).unwrap())
            .unwrap();
    file.validate().unwrap();
    assert_eq!(file.spec, goal.spec.goal);
}

#[test]
fn the_rendering_check_fails_on_broken_kustomizations() {
    let dir = std::env::temp_dir().join(format!("acv-kustomize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let k = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: acv-shop\n";
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("{k}resources: [missing.yaml]\n"),
    )
    .unwrap();
    assert!(render(&dir).unwrap_err().contains("does not exist"));
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("{k}resources: [svc.yaml]\nimages: []\n"),
    )
    .unwrap();
    assert!(render(&dir).is_err(), "unsupported fields are refused");
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("{k}resources: [svc.yaml]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("svc.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {selector: {app: nothing}, ports: [{port: 80, targetPort: http}]}\n",
    )
    .unwrap();
    let objects = render(&dir).unwrap();
    assert_eq!(objects[0].namespace(), Some("acv-shop"), "the namespace is set");
    let problems = consistency(&objects);
    assert!(
        problems.iter().any(|p| p.contains("selects no pod template")),
        "{problems:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_image_is_multi_stage_and_runs_as_non_root() {
    let dir = manifests().join("images");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
        assert!(froms >= 2, "{}: not multi-stage", path.display());
        let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
        let user = lines[last_from..]
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{}: the final stage sets no USER", path.display()));
        let uid = user.split(':').next().unwrap();
        assert!(uid != "0" && uid != "root", "{}: runs as root", path.display());
        assert!(
            lines[last_from..].iter().any(|l| l.starts_with("COPY --from=")),
            "{}",
            path.display()
        );
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "Containerfile.manager",
            "Containerfile.shop",
            "Containerfile.sidecar"
        ]
    );
    let sidecar = std::fs::read_to_string(dir.join("Containerfile.sidecar")).unwrap();
    assert!(
        sidecar.contains("acv-guest.wasm") && sidecar.contains("/app/"),
        "the sidecar image carries the guest"
    );
    // The images are the ones the manifests run.
    let control = rendered("overlays/nats");
    let shop = rendered("shop");
    let images: BTreeSet<String> = control
        .iter()
        .chain(&shop)
        .flat_map(|o| {
            o.value["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["image"].as_str().map(str::to_owned))
        .filter(|i| i.starts_with("acv/"))
        .collect();
    assert_eq!(
        images,
        BTreeSet::from(["acv/manager:0.1.0".to_owned(), "acv/shop:0.1.0".to_owned()])
    );
}

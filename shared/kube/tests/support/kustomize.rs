//! The subset of `kustomize build` that `manifests/` uses, to render an overlay without kustomize: `resources`
//! (files of YAML documents, or directories with their own kustomization.yaml, recursively), `namespace`,
//! `labels` (metadata only) and `patches` (JSON 6902 files with a `target`). Anything else in a kustomization.yaml
//! is an error, so a field this renderer would silently ignore cannot creep in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kustomization {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Vec<LabelSet>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub patches: Vec<PatchRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSet {
    pub pairs: BTreeMap<String, String>,
    #[serde(default)]
    pub include_selectors: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRef {
    pub path: String,
    pub target: Target,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    pub kind: String,
    pub name: String,
}

/// Kinds that have no namespace.
pub const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "PersistentVolume",
    "StorageClass",
];

/// Reads a kustomization.yaml.
pub fn read_kustomization(dir: &Path) -> Result<Kustomization, String> {
    let path = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let k: Kustomization = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if k.api_version != "kustomize.config.k8s.io/v1beta1" || k.kind != "Kustomization" {
        return Err(format!("{}: not a v1beta1 Kustomization", path.display()));
    }
    Ok(k)
}

/// Every YAML document of a file (empty documents skipped).
pub fn documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).map_err(|e| format!("{}: {e}", path.display()))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// One rendered object and the file it came from.
#[derive(Debug, Clone)]
pub struct Object {
    pub value: Value,
    pub file: PathBuf,
}

impl Object {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
    pub fn namespace(&self) -> Option<&str> {
        self.value["metadata"]["namespace"].as_str()
    }
    pub fn group(&self) -> &str {
        let api = self.value["apiVersion"].as_str().unwrap_or_default();
        api.rsplit_once('/').map_or("", |(g, _)| g)
    }
}

/// Renders the kustomization in `dir` like `kustomize build dir` would (for the subset above).
pub fn render(dir: &Path) -> Result<Vec<Object>, String> {
    render_inner(dir, &mut BTreeSet::new())
}

fn render_inner(dir: &Path, seen: &mut BTreeSet<PathBuf>) -> Result<Vec<Object>, String> {
    let canonical = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if !seen.insert(canonical.clone()) {
        return Err(format!("{} is included twice (or in a cycle)", dir.display()));
    }
    let k = read_kustomization(dir)?;
    let mut objects = Vec::new();
    for r in &k.resources {
        let path = dir.join(r);
        if path.is_dir() {
            objects.extend(render_inner(&path, seen)?);
        } else if path.is_file() {
            for value in documents(&path)? {
                objects.push(Object {
                    value,
                    file: path.clone(),
                });
            }
        } else {
            return Err(format!(
                "{}: resource {r:?} does not exist",
                dir.join("kustomization.yaml").display()
            ));
        }
    }
    for p in &k.patches {
        let path = dir.join(&p.path);
        let docs = documents(&path)?;
        let [ops] = &docs[..] else {
            return Err(format!(
                "{}: expected one JSON 6902 patch document",
                path.display()
            ));
        };
        let patch: json_patch::Patch =
            serde_json::from_value(ops.clone()).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut hits = 0;
        for o in objects.iter_mut() {
            let t = &p.target;
            let api = o.value["apiVersion"].as_str().unwrap_or_default().to_owned();
            let (group, version) = api.rsplit_once('/').unwrap_or(("", api.as_str()));
            if o.kind() == t.kind
                && o.name() == t.name
                && t.group.as_deref().is_none_or(|g| g == group)
                && t.version.as_deref().is_none_or(|v| v == version)
            {
                json_patch::patch(&mut o.value, &patch)
                    .map_err(|e| format!("{}: on {} {}: {e}", path.display(), t.kind, t.name))?;
                hits += 1;
            }
        }
        if hits == 0 {
            return Err(format!(
                "{}: the patch target {} {} matches nothing",
                path.display(),
                p.target.kind,
                p.target.name
            ));
        }
    }
    for o in objects.iter_mut() {
        let kind = o.kind().to_owned();
        if let Some(ns) = &k.namespace
            && !CLUSTER_SCOPED.contains(&kind.as_str())
        {
            match o.namespace() {
                None => o.value["metadata"]["namespace"] = Value::String(ns.clone()),
                Some(given) if given == ns => {}
                Some(given) => {
                    return Err(format!(
                        "{}: {kind} {} says namespace {given} but its kustomization sets {ns}",
                        o.file.display(),
                        o.name()
                    ));
                }
            }
        }
        for set in &k.labels {
            let meta = &mut o.value["metadata"];
            if meta.get("labels").is_none_or(Value::is_null) {
                meta["labels"] = Value::Object(Default::default());
            }
            for (key, v) in &set.pairs {
                meta["labels"][key] = Value::String(v.clone());
            }
            if set.include_selectors {
                return Err("labels.includeSelectors is not supported by this renderer".into());
            }
        }
    }
    let mut ids = BTreeSet::new();
    for o in &objects {
        if o.name().is_empty() || o.kind().is_empty() {
            return Err(format!("{}: an object without kind or name", o.file.display()));
        }
        let id = (
            o.group().to_owned(),
            o.kind().to_owned(),
            o.namespace().map(str::to_owned),
            o.name().to_owned(),
        );
        if !ids.insert(id.clone()) {
            return Err(format!("{}: duplicate {id:?}", o.file.display()));
        }
    }
    Ok(objects)
}

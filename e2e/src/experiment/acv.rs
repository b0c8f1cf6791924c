//! The original ACV-LLM dataset files (`--acv-dataset DIR`, with `DIR/dataset/*.yaml` or the YAML files directly):
//! each becomes a [`Case`] whose task text, workload, environment and chaos come from the file, and whose level and
//! oracle come from the matching case of our own set (the dataset carries no expected outcome; its
//! `autonomous_level` disagrees with the paper for four files, and the paper wins). A file with no matching case is
//! an error that says so.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::case::{Ask, Case, CaseError, FaultSpec, PresetName, SetupStep};

/// One dataset file as the ACV schema (`data/schema/dataset.yaml`) has it.
#[derive(Debug, Deserialize)]
struct AcvFile {
    #[allow(dead_code)]
    namespace: String,
    component: String,
    autonomous_level: u8,
    #[serde(default)]
    task: Option<String>,
    workload: String,
    #[serde(default)]
    environment: Option<AcvEnvironment>,
    #[serde(default)]
    chaos: Option<AcvChaos>,
}

#[derive(Debug, Deserialize, Default)]
struct AcvEnvironment {
    #[serde(default)]
    delete: Vec<String>,
    #[serde(default)]
    modify: Vec<AcvModify>,
}

#[derive(Debug, Deserialize)]
struct AcvModify {
    #[allow(dead_code)]
    filename: String,
    #[serde(default)]
    modify: Vec<AcvPatch>,
}

#[derive(Debug, Deserialize)]
struct AcvPatch {
    jsonpath: String,
    value: serde_yaml::Value,
}

#[derive(Debug, Deserialize)]
struct AcvChaos {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    args: serde_yaml::Value,
}

/// What a dataset file was turned into, with the dataset's own level for comparison.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The case to run.
    pub case: Case,
    /// The file it came from.
    pub file: PathBuf,
    /// `autonomous_level` as written in the file.
    pub file_level: u8,
}

/// Reads every dataset file under `dir` (or `dir/dataset`, or `dir/data/dataset`) and matches it with `ours`.
pub fn load(dir: &Path, ours: &[Case]) -> Result<Vec<Imported>, CaseError> {
    let folder = [dir.join("data/dataset"), dir.join("dataset"), dir.to_path_buf()]
        .into_iter()
        .find(|d| d.is_dir())
        .ok_or_else(|| CaseError::Read {
            path: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        })?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map_err(|source| CaseError::Read {
            path: folder.clone(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CaseError::Invalid {
            case: folder.display().to_string(),
            reason: "no ACV dataset *.yaml files here".into(),
        });
    }
    files.iter().map(|f| import(f, ours)).collect()
}

fn import(path: &Path, ours: &[Case]) -> Result<Imported, CaseError> {
    let text = std::fs::read_to_string(path).map_err(|source| CaseError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: AcvFile = serde_yaml::from_str(&text).map_err(|source| CaseError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let invalid = |reason: String| CaseError::Invalid {
        case: name.clone(),
        reason,
    };
    let ours = ours
        .iter()
        .find(|c| c.acv_file.as_deref() == Some(name.as_str()))
        .ok_or_else(|| invalid("no case in e2e/cases has the oracle for this file (acv_file: ...)".into()))?;
    let mut case = ours.clone();
    case.id = format!("acv-{}", ours.id);
    case.component = file.component.clone();
    case.workload.preset = match file.workload.as_str() {
        "light" => PresetName::Light,
        "moderate" => PresetName::Moderate,
        "heavy" => PresetName::Heavy,
        "increase" => PresetName::Increase,
        other => return Err(invalid(format!("unknown workload {other:?}"))),
    };
    let env = file.environment.unwrap_or_default();
    let mut setup = Vec::new();
    if !env.delete.is_empty() {
        // The deployment manifest is deleted: on the local runtime the component is scaled to zero.
        setup.push(SetupStep::Scale(0));
    }
    for m in &env.modify {
        for p in &m.modify {
            match (p.jsonpath.as_str(), p.value.as_str()) {
                ("$.spec.template.spec.containers[0].image", Some(image)) => {
                    setup.push(SetupStep::Image(image.to_owned()));
                }
                (path, _) => return Err(invalid(format!("cannot apply the change at {path}"))),
            }
        }
    }
    case.setup = setup;
    case.fault = match file.chaos {
        None if case.workload.preset == PresetName::Increase => Some(FaultSpec::RisingTraffic),
        None => None,
        Some(c) if c.kind == "PodFailure" => Some(FaultSpec::PodFailure),
        Some(c) if c.kind == "StressChaos" => {
            let num = |k: &str, default: u64| {
                c.args
                    .get("cpu")
                    .and_then(|cpu| cpu.get(k))
                    .and_then(serde_yaml::Value::as_u64)
                    .unwrap_or(default)
            };
            Some(FaultSpec::CpuStress {
                workers: u32::try_from(num("workers", 2)).unwrap_or(2),
                load_percent: u32::try_from(num("load", 50)).unwrap_or(50),
            })
        }
        Some(c) => {
            return Err(invalid(format!(
                "chaos type {:?} has no local equivalent",
                c.kind
            )));
        }
    };
    case.ask = match (file.task, &ours.ask) {
        (Some(t), Ask::Task(_)) => Ask::Task(t),
        (None, Ask::HealthCheck) => Ask::HealthCheck,
        (task, ask) => {
            return Err(invalid(format!(
                "the file's task {task:?} does not fit the matching case's ask {ask:?}"
            )));
        }
    };
    case.validate()?;
    Ok(Imported {
        case,
        file: path.to_owned(),
        file_level: file.autonomous_level,
    })
}

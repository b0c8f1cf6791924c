//! `crdgen`: prints the Goal CustomResourceDefinition generated from `acv_kube::crd` (as kube-rs's controller-rs
//! does). `cargo run -p acv-kube --bin crdgen > manifests/base/crd/goals.acv.dev.yaml` refreshes the committed copy.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match acv_kube::crd::crd_yaml() {
        Ok(yaml) => match std::io::stdout().write_all(yaml.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: writing the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: serialising the CRD: {e}");
            ExitCode::FAILURE
        }
    }
}

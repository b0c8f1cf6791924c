//! `acv-certs`: creates a development CA (or reuses the one in `--dir`) and issues one certificate per component
//! for the peer API. In Kubernetes the same files come from cert-manager (see docs/peers.md).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use acv_pki::{DevCa, Identity, PkiError, Validity, ca::CA_CERT};
use acv_protocol::ComponentName;
use clap::Parser;

/// Development certificates for acv's peer API (mutual TLS between sidecars).
#[derive(Debug, Parser)]
#[command(name = "acv-certs", version)]
struct Args {
    /// Directory to write into; an existing `ca.pem`/`ca.key` there is reused.
    #[arg(long, default_value = "certs")]
    dir: PathBuf,
    /// Namespace in the identities (`spiffe://acv/<namespace>/<component>`).
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Validity of the component certificates, in days.
    #[arg(long, default_value_t = 30)]
    days: u64,
    /// Also issue a TLS server certificate for these DNS names or IP addresses (repeatable or comma-separated),
    /// e.g. the injection webhook's `acv-manager.acv-system.svc`, written as `tls.crt` / `tls.key` in `--dir`
    /// (what `acv-manager serve --webhook-tls-dir` reads).
    #[arg(long = "server-name", value_delimiter = ',')]
    server_names: Vec<String>,
    /// Components to issue certificates for.
    #[arg(required_unless_present = "server_names")]
    components: Vec<ComponentName>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), PkiError> {
    let ca = if args.dir.join(CA_CERT).exists() {
        println!("reusing the CA in {}", args.dir.display());
        DevCa::load(&args.dir)?
    } else {
        let ca = DevCa::generate("acv development CA", Duration::from_secs(365 * 86_400))?;
        ca.write(&args.dir)?;
        println!("created a CA in {}", args.dir.display());
        ca
    };
    let validity = Validity::from_now(Duration::from_secs(args.days * 86_400));
    for component in &args.components {
        let identity = Identity::new(&args.namespace, component.clone())?;
        let (cert, _key) = ca
            .issue(&identity, validity)?
            .write(&args.dir, component.as_str())?;
        println!("{identity}: {}", cert.display());
    }
    if !args.server_names.is_empty() {
        let names: Vec<&str> = args.server_names.iter().map(String::as_str).collect();
        let (cert, _key) = ca.issue_server(&names, validity)?.write_tls(&args.dir)?;
        println!("server {}: {}", names.join(", "), cert.display());
    }
    Ok(())
}

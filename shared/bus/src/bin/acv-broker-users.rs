//! Prints the broker users and permissions of an acv namespace, from the same code the bus checks them with
//! ([`acv_bus::identity`]). `scripts/broker-users.sh` applies them to the local brokers.
//!
//! ```text
//! acv-broker-users rabbitmq --namespace acv --component catalogue --component front-end
//!     one line per user: USER<TAB>CONFIGURE<TAB>WRITE<TAB>READ (regexes for rabbitmqctl set_permissions)
//! acv-broker-users nats --namespace acv --secrets DIR --component catalogue ...
//!     a nats-server `authorization` block; each password is read from DIR/USER
//! ```

use std::{path::PathBuf, process::ExitCode};

use acv_bus::{Principal, identity};
use acv_protocol::ComponentName;

struct Args {
    broker: String,
    namespace: String,
    secrets: Option<PathBuf>,
    principals: Vec<Principal>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let broker = argv
        .next()
        .ok_or("usage: acv-broker-users rabbitmq|nats --namespace NS [--secrets DIR] --component NAME...")?;
    if broker != "rabbitmq" && broker != "nats" {
        return Err(format!("unknown broker {broker:?}: expected rabbitmq or nats"));
    }
    let mut namespace = "acv".to_owned();
    let mut secrets = None;
    let mut principals = vec![Principal::Manager, Principal::Operator];
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--namespace" => namespace = value,
            "--secrets" => secrets = Some(PathBuf::from(value)),
            "--component" => principals.push(Principal::Component(
                ComponentName::new(value).map_err(|e| e.to_string())?,
            )),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    Ok(Args {
        broker,
        namespace,
        secrets,
        principals,
    })
}

fn run(args: Args) -> Result<String, String> {
    let ns = &args.namespace;
    if args.broker == "rabbitmq" {
        return Ok(args
            .principals
            .iter()
            .map(|p| {
                let (c, w, r) = identity::amqp_permissions(ns, p);
                format!("{}\t{c}\t{w}\t{r}\n", p.user(ns))
            })
            .collect());
    }
    let dir = args
        .secrets
        .ok_or("nats needs --secrets DIR (one password file per user)")?;
    let users = args
        .principals
        .into_iter()
        .map(|p| {
            let path = dir.join(p.user(ns));
            let pw = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((p, pw.trim_end().to_owned()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(identity::nats_authorization(ns, &users))
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)).and_then(run) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("acv-broker-users: {e}");
            ExitCode::from(2)
        }
    }
}

//! Black-box tests of the e2e binaries' command lines (`acv-shop`, `acv-local`, `acv-loadgen`, `acv-chaos`,
//! `acv-all-in-one`): `--help` and `--version` work, and bad input gets a message and the shared exit codes —
//! 2 for arguments clap refuses, 64 for bad configuration (env, runtime file, out-of-bounds specs), 1 for failures.

use std::process::{Command, Output};

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_remove("ACV_RUNTIME_API")
        .env_remove("ACV_RUNTIME_FILE");
    cmd.env_remove("ACV_LOADGEN_TARGET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn expect(o: &Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    assert!(text(o).contains(needle), "{needle:?} not in: {}", text(o));
}

const BINS: [(&str, &str); 5] = [
    ("acv-shop", env!("CARGO_BIN_EXE_acv-shop")),
    ("acv-local", env!("CARGO_BIN_EXE_acv-local")),
    ("acv-loadgen", env!("CARGO_BIN_EXE_acv-loadgen")),
    ("acv-chaos", env!("CARGO_BIN_EXE_acv-chaos")),
    ("acv-all-in-one", env!("CARGO_BIN_EXE_acv-all-in-one")),
];

#[test]
fn every_binary_has_help_and_version() {
    for (name, bin) in BINS {
        let o = run(bin, &["--help"], &[]);
        expect(&o, 0, &format!("Usage: {name}"));
        let o = run(bin, &["--version"], &[]);
        expect(&o, 0, &format!("{name} {}", env!("CARGO_PKG_VERSION")));
        let o = run(bin, &["--no-such-flag"], &[]);
        expect(&o, 2, "unexpected argument '--no-such-flag'");
    }
}

#[test]
fn shop_refuses_unknown_services_and_bad_env() {
    let bin = env!("CARGO_BIN_EXE_acv-shop");
    expect(&run(bin, &[], &[]), 2, "required");
    expect(&run(bin, &["bogus"], &[]), 2, "invalid value 'bogus'");
    expect(&run(bin, &["stress", "--help"], &[]), 0, "--cpu-workers");
    expect(&run(bin, &["stress", "--cpu-load", "0"], &[]), 2, "--cpu-load");
    expect(
        &run(bin, &["stress", "--cpu-workers", "65"], &[]),
        2,
        "--cpu-workers",
    );
    expect(&run(bin, &["catalogue"], &[]), 64, "PORT");
    expect(&run(bin, &["catalogue"], &[("PORT", "http")]), 64, "PORT");
}

#[test]
fn local_refuses_bad_arguments_and_runtime_files() {
    let bin = env!("CARGO_BIN_EXE_acv-local");
    let shop = concat!(env!("CARGO_MANIFEST_DIR"), "/shop.yaml");
    expect(&run(bin, &[shop, "--api", "nowhere"], &[]), 2, "--api");
    expect(&run(bin, &[shop, "JUSTANAME"], &[]), 2, "expected NAME=VALUE");
    expect(
        &run(bin, &[shop], &[("ACV_RUNTIME_API", "not-an-address")]),
        2,
        "not-an-address",
    );
    expect(&run(bin, &["/nonexistent/runtime.yaml"], &[]), 64, "cannot read");
    let dir = std::env::temp_dir().join(format!("acv-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "services: [this is: not, a runtime file").unwrap();
    expect(&run(bin, &[bad.to_str().unwrap()], &[]), 64, "runtime file");
    // The file may come from the environment too.
    expect(
        &run(bin, &[], &[("ACV_RUNTIME_FILE", bad.to_str().unwrap())]),
        64,
        "runtime file",
    );
    // A control API off loopback is refused after the services started, and they are stopped again.
    let o = run(
        bin,
        &[shop, "--api", "10.1.2.3:7070", "SHOP_BIN=/bin/true"]
            .iter()
            .copied()
            .chain([
                "FRONT_END_PORT=0",
                "CATALOGUE_PORT=0",
                "CARTS_PORT=0",
                "ORDERS_PORT=0",
            ])
            .chain(["PAYMENT_PORT=0", "SHIPPING_PORT=0", "USER_PORT=0"])
            .collect::<Vec<_>>(),
        &[],
    );
    expect(&o, 1, "not a loopback address");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn loadgen_refuses_bad_profiles_and_targets() {
    let bin = env!("CARGO_BIN_EXE_acv-loadgen");
    expect(&run(bin, &["--target", "127.0.0.1:9"], &[]), 2, "--preset");
    expect(&run(bin, &["--rps", "5"], &[]), 2, "--target");
    expect(
        &run(bin, &["--target", "127.0.0.1:9", "--preset", "huge"], &[]),
        2,
        "unknown preset",
    );
    expect(
        &run(bin, &["--target", "127.0.0.1:9", "--ramp", "1:2"], &[]),
        2,
        "FROM:TO:SECS",
    );
    expect(
        &run(bin, &["--target", "127.0.0.1:9", "--steps", "5:1,x"], &[]),
        2,
        "RPS:SECS",
    );
    expect(
        &run(
            bin,
            &["--target", "127.0.0.1:9", "--rps", "5", "--preset", "light"],
            &[],
        ),
        2,
        "cannot be used with",
    );
    // Parsed, but out of bounds: exit 64 before any request leaves.
    expect(
        &run(
            bin,
            &["--target", "10.1.2.3:80", "--rps", "5", "--secs", "1"],
            &[],
        ),
        64,
        "not a loopback address",
    );
    expect(
        &run(bin, &["--target", "127.0.0.1:9", "--rps=-1", "--secs", "1"], &[]),
        64,
        "invalid load profile",
    );
    expect(
        &run(
            bin,
            &["--rps", "5", "--secs", "1"],
            &[("ACV_LOADGEN_TARGET", "10.1.2.3:80")],
        ),
        64,
        "not a loopback address",
    );
}

#[test]
fn chaos_refuses_bad_faults_and_reports_an_absent_runtime() {
    let bin = env!("CARGO_BIN_EXE_acv-chaos");
    expect(&run(bin, &[], &[]), 2, "COMPONENT");
    expect(&run(bin, &["catalogue"], &[]), 2, "Usage");
    expect(&run(bin, &["catalogue", "explode"], &[]), 2, "'explode'");
    expect(&run(bin, &["Cata Logue", "clear"], &[]), 2, "lowercase");
    expect(&run(bin, &["catalogue", "memory-stress"], &[]), 2, "--mib");
    expect(
        &run(bin, &["catalogue", "pod-failure", "--mode", "some"], &[]),
        2,
        "'some'",
    );
    expect(
        &run(bin, &["catalogue", "latency", "--ms", "5", "--secs=-1"], &[]),
        2,
        "--secs",
    );
    expect(
        &run(bin, &["catalogue", "latency", "--ms", "5", "--secs", "0"], &[]),
        2,
        "positive",
    );
    expect(
        &run(bin, &["--api", "10.1.2.3:7070", "catalogue", "clear"], &[]),
        64,
        "loopback",
    );
    // Nothing listens on port 9 of loopback (discard is not running here): a failure, not bad input.
    let o = run(bin, &["--api", "127.0.0.1:9", "catalogue", "pod-failure"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn all_in_one_refuses_bad_arguments_and_runtime_files() {
    let bin = env!("CARGO_BIN_EXE_acv-all-in-one");
    expect(&run(bin, &["--once"], &[]), 2, "--task");
    expect(&run(bin, &["--task", "Report your status"], &[]), 2, "--to");
    expect(&run(bin, &["--to", "Cata Logue"], &[]), 2, "lowercase");
    expect(&run(bin, &["--components", "a,B"], &[]), 2, "lowercase");
    expect(&run(bin, &["/nonexistent/runtime.yaml"], &[]), 64, "cannot read");
}

//! The stressor the local runtime starts for CPU and memory stress faults (`acv-shop stress ...`), like the
//! stress-ng that Chaos Mesh's StressChaos runs inside a pod: `--cpu-workers N --cpu-load P` burns N threads at P %
//! duty cycle, `--mem-mib M` holds M MiB resident. It exits when its parent dies or after `--max-secs`.

use std::time::{Duration, Instant};

/// What to burn: `acv-shop stress [--cpu-workers N] [--cpu-load P] [--mem-mib M] [--max-secs S]`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct StressArgs {
    /// Burning threads.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub cpu_workers: u32,
    /// Duty cycle of each thread, percent.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub cpu_load: u32,
    /// Resident memory to hold, MiB.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16_384))]
    pub mem_mib: u32,
    /// Give up after this long, seconds (a safety net).
    #[arg(long, default_value_t = 900)]
    pub max_secs: u64,
}

/// Parses the stressor's flags (all optional), as the local runtime passes them; the error is clap's message.
pub fn parse_args(args: &[String]) -> Result<StressArgs, String> {
    #[derive(clap::Parser)]
    #[command(name = "acv-shop stress", no_binary_name = true)]
    struct Wrap {
        #[command(flatten)]
        args: StressArgs,
    }
    <Wrap as clap::Parser>::try_parse_from(args)
        .map(|w| w.args)
        .map_err(|e| e.to_string())
}

/// Runs the stressor until `max_secs` passes (the caller also arranges exit-with-parent).
pub fn run(args: &StressArgs) {
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    for _ in 0..args.cpu_workers {
        let load = args.cpu_load;
        std::thread::spawn(move || burn(load, deadline));
    }
    let mut held: Vec<u8> = Vec::new();
    if args.mem_mib > 0 {
        let bytes = (args.mem_mib as usize) << 20;
        held = vec![0u8; bytes];
        // Touch every page so it is resident, not just reserved.
        for i in (0..bytes).step_by(4096) {
            held[i] = 1;
        }
    }
    println!(
        "stress: {} cpu worker(s) at {}%, {} MiB held",
        args.cpu_workers, args.cpu_load, args.mem_mib
    );
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::hint::black_box(&held);
}

/// Busy for `load` % of every 20 ms period.
fn burn(load: u32, deadline: Instant) {
    let period = Duration::from_millis(20);
    let busy = period * load / 100;
    let mut x = 1u64;
    while Instant::now() < deadline {
        let start = Instant::now();
        while start.elapsed() < busy {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        if let Some(rest) = period.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn args() {
        let a = parse_args(&s(&["--cpu-workers", "2", "--cpu-load", "50"])).unwrap();
        assert_eq!((a.cpu_workers, a.cpu_load, a.mem_mib), (2, 50, 0));
        assert!(parse_args(&s(&["--cpu-load", "0"])).is_err());
        assert!(parse_args(&s(&["--cpu-workers"])).is_err());
        assert!(parse_args(&s(&["--bogus", "1"])).is_err());
    }
}

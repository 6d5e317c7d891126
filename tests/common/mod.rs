//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use shotflow::demo::{self, Curve, DemoConfig};
use shotflow::source::Synthetic;

/// A demo configuration small enough for debug builds.
pub fn small_demo() -> DemoConfig {
    DemoConfig {
        source: Synthetic {
            events: 1_203,
            batch_size: 50,
            frame: Some([64, 32]),
            photons: 40.0,
            ..Synthetic::default()
        },
        ..DemoConfig::default()
    }
}

/// The command-line arguments that make `shotflow demo` run [`small_demo`].
pub fn small_demo_args() -> Vec<String> {
    [
        "demo",
        "--events",
        "1203",
        "--batch-size",
        "50",
        "--frame",
        "64x32",
        "--photons",
        "40",
        "--json",
        "--no-output",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The demo's curve computed by a plain loop over the same shots.
pub fn demo_reference(config: &DemoConfig) -> Curve {
    let mut curve = Curve::default();
    for i in 0..config.source.events {
        let row = demo::reduce(&config.source, &config.source.event(i));
        if row.pulse_energy >= config.energy_cut {
            curve.add(&row);
        }
    }
    curve
}

/// Waits for a child at most `limit`, killing it (by its own PID) if it overstays.
pub fn wait_bounded(child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "process overstayed {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns `program args` with piped output.
pub fn spawn(program: &str, args: &[String]) -> Child {
    Command::new(program)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

//! A first shotflow program: mean pulse energy of laser-on shots per delay, in event order.
//!
//! ```text
//! cargo run --release --example pump_probe -- --events 100000 --workers 2
//! mpirun -n 2 target/release/examples/pump_probe --events 100000
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use clap::Parser;
use shotflow::prelude::*;
use timely::dataflow::operators::vec::{Filter, Map};

#[derive(Parser)]
struct Args {
    /// Number of shots.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    #[command(flatten)]
    launch: Launch,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Synthetic {
        events: args.events,
        frame: None,
        ..Synthetic::default()
    };
    let keys = config.keys();
    // delay (as bits, for exact keys) → (shots, sum of pulse energies)
    let table = Arc::new(Mutex::new(BTreeMap::<u64, (u64, f64)>::new()));
    let out = Arc::clone(&table);
    execute(&args.launch, move |worker| {
        let out = Arc::clone(&out);
        worker.dataflow(|scope| {
            scope
                .synthetic(&config)
                .filter(move |shot| shot.get::<bool>(keys.laser_on) == Some(true))
                .map(move |shot| {
                    let delay = shot.get_f64(keys.delay).unwrap_or(f64::NAN);
                    (
                        shot.id,
                        delay,
                        shot.get_f64(keys.pulse_energy).unwrap_or(f64::NAN),
                    )
                })
                .ordered("PerDelay", move |_batch, rows: &[(u64, f64, f64)]| {
                    let mut table = out.lock().unwrap();
                    for &(_, delay, energy) in rows {
                        let slot = table.entry(delay.to_bits()).or_default();
                        slot.0 += 1;
                        slot.1 += energy;
                    }
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })?;
    // The ordered sink runs on worker 0, so only process 0 has the table.
    let mut rows: Vec<(f64, u64, f64)> = table
        .lock()
        .unwrap()
        .iter()
        .map(|(delay, (n, sum))| (f64::from_bits(*delay), *n, sum / *n as f64))
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (delay, n, mean) in rows {
        println!("delay {delay:>6.2} ps: {n:>6} shots, mean pulse energy {mean:.4} mJ");
    }
    Ok(())
}

//! Dataflow results against sequential references computed here, at 1, 2 and 3 workers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

mod common;

use common::demo::{self, DemoConfig};
use common::{demo_reference, small_demo};
use shotflow::flow::Settings;
use shotflow::prelude::*;
use shotflow::runtime::{execute_plan, Plan};
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::operators::Exchange;

fn plans() -> Vec<Plan> {
    vec![
        Plan::Thread,
        Plan::Process { workers: 2 },
        Plan::Process { workers: 3 },
    ]
}

/// Per delay: (count, max energy, sum of energies, sum of ids) of laser-on shots above 0.9 mJ.
type Reduced = BTreeMap<u64, (u64, f64, f64, u64)>;

fn source() -> Synthetic {
    Synthetic {
        events: 20_011, // not a multiple of the batch size: the last batch is short
        batch_size: 97,
        frame: None,
        ..Synthetic::default()
    }
}

fn sequential(config: &Synthetic) -> Reduced {
    let keys = config.keys();
    let mut out = Reduced::new();
    for i in 0..config.events {
        let e = config.event(i);
        let energy = e.get_f64(keys.pulse_energy).unwrap();
        if e.get::<bool>(keys.laser_on).unwrap() && energy > 0.9 {
            let slot = out
                .entry(e.get_f64(keys.delay).unwrap().to_bits())
                .or_insert((0, f64::MIN, 0.0, 0));
            slot.0 += 1;
            slot.1 = slot.1.max(energy);
            slot.2 += energy;
            slot.3 += e.id;
        }
    }
    out
}

fn merge(into: &mut Reduced, part: Reduced) {
    for (delay, (n, max, sum, ids)) in part {
        let slot = into.entry(delay).or_insert((0, f64::MIN, 0.0, 0));
        slot.0 += n;
        slot.1 = slot.1.max(max);
        slot.2 += sum;
        slot.3 += ids;
    }
}

/// map → filter → exchange by delay → per-worker reduction; partial results merged here.
fn dataflow(config: Synthetic, plan: &Plan) -> Reduced {
    let keys = config.keys();
    let parts = execute_plan(plan, move |worker| {
        let part = Arc::new(Mutex::new(Reduced::new()));
        let out = Arc::clone(&part);
        let config = config.clone();
        worker.dataflow(|scope| {
            scope
                .synthetic(&config)
                .filter(move |e| e.get::<bool>(keys.laser_on) == Some(true))
                .map(move |e| {
                    let delay = e.get_f64(keys.delay).unwrap().to_bits();
                    (e.id, delay, e.get_f64(keys.pulse_energy).unwrap())
                })
                .filter(|(_, _, energy)| *energy > 0.9)
                .exchange(|(_, delay, _)| *delay)
                .for_each_batch("Reduce", move |_, rows| {
                    let mut part = out.lock().unwrap();
                    for &(id, delay, energy) in rows {
                        let slot = part.entry(delay).or_insert((0, f64::MIN, 0.0, 0));
                        slot.0 += 1;
                        slot.1 = slot.1.max(energy);
                        slot.2 += energy;
                        slot.3 += id;
                    }
                });
        });
        shotflow::runtime::run_to_completion(worker)?;
        let part = std::mem::take(&mut *part.lock().unwrap());
        Ok::<_, shotflow::runtime::Aborted>(part)
    })
    .unwrap();
    let mut all = Reduced::new();
    parts.into_iter().for_each(|p| merge(&mut all, p));
    all
}

fn assert_reduced_eq(got: &Reduced, want: &Reduced) {
    assert_eq!(got.len(), want.len());
    for ((d1, a), (d2, b)) in got.iter().zip(want) {
        assert_eq!(d1, d2);
        assert_eq!(
            (a.0, a.1, a.3),
            (b.0, b.1, b.3),
            "delay {}",
            f64::from_bits(*d1)
        );
        // Worker partial sums add in another order than the sequential loop.
        assert!((a.2 - b.2).abs() <= 1e-9 * b.2.abs(), "{} vs {}", a.2, b.2);
    }
}

#[test]
fn map_filter_exchange_reduce_matches_sequential_reference() {
    let config = source();
    let want = sequential(&config);
    assert!(want.values().map(|v| v.0).sum::<u64>() > 3000);
    for plan in plans() {
        let got = dataflow(config.clone(), &plan);
        assert_reduced_eq(&got, &want);
    }
}

#[test]
fn demo_matches_sequential_reference_bit_for_bit() {
    let config = small_demo();
    let want = demo_reference(&config);
    assert!(want.kept > 900 && want.sorted().len() == 8);
    for plan in plans() {
        let report = demo::run(&config, &plan, Settings::default())
            .unwrap()
            .expect("process 0 reports");
        assert_eq!(report.events, config.source.events);
        // The ordered sink adds rows in event order, so even float sums are identical.
        assert_eq!(report.curve, want, "{}", plan.describe());
    }
}

#[test]
fn the_pump_probe_signal_is_there() {
    // Independent of the engine: laser-on shots after time zero carry more photons per mJ.
    let curve = demo_reference(&DemoConfig {
        source: Synthetic {
            events: 4_000,
            frame: Some([64, 32]),
            photons: 40.0,
            ..Synthetic::default()
        },
        ..DemoConfig::default()
    });
    for p in curve.sorted() {
        let diff = p.mean_on() - p.mean_off();
        if p.delay > 1.0 {
            assert!(diff > 5.0, "delay {}: on-off {diff}", p.delay);
        } else if p.delay < 0.0 {
            assert!(diff.abs() < 4.0, "delay {}: on-off {diff}", p.delay);
        }
    }
}

#[test]
fn every_event_arrives_once_in_order() {
    let config = source();
    for plan in plans() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&seen);
        let c = config.clone();
        execute_plan(&plan, move |worker| {
            let out = Arc::clone(&out);
            worker.dataflow(|scope| {
                scope
                    .synthetic(&c)
                    .map(|e| e.id)
                    .ordered("Ids", move |_, ids: &[u64]| {
                        out.lock().unwrap().extend_from_slice(ids)
                    });
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        let want: Vec<u64> = (0..config.events).map(|i| config.first_id + i).collect();
        assert_eq!(*seen.lock().unwrap(), want, "{}", plan.describe());
    }
}

#[test]
fn a_failing_worker_ends_the_run_with_its_name_and_cause() {
    for plan in plans() {
        let started = std::time::Instant::now();
        let config = source();
        let peers = plan.peers();
        let error = execute_plan(&plan, move |worker| {
            let last = peers - 1;
            let index = worker.index();
            worker.dataflow(|scope| {
                scope
                    .synthetic(&config)
                    .for_each_batch("Check", move |batch, _| {
                        if index == last && batch >= 20 {
                            shotflow::runtime::fail(format!("bad batch {batch}"));
                        }
                    });
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with(&format!(
                "worker {} (process 0) failed: bad batch",
                peers - 1
            )),
            "{error}"
        );
        assert!(started.elapsed().as_secs() < 10);
    }
}

#[test]
fn a_worker_error_is_reported() {
    let error = execute_plan(&Plan::Process { workers: 2 }, |worker| {
        if worker.index() == 1 {
            return Err("cannot open run directory /nonexistent".to_string());
        }
        Ok(())
    })
    .unwrap_err()
    .to_string();
    assert_eq!(
        error,
        "worker 1 (process 0) failed: cannot open run directory /nonexistent"
    );
}

#[test]
fn demo_from_a_simulated_run_matches_sequential_reference() {
    let config = DemoConfig {
        run: Some(common::small_run()),
        ..DemoConfig::default()
    };
    let want = common::run_reference(config.run.as_ref().unwrap(), config.energy_cut);
    assert!(want.kept > 50 && want.sorted().len() == 6, "{want:?}"); // 12 trains, 2 per delay step
    for plan in plans() {
        let report = demo::run(&config, &plan, Settings::default())
            .unwrap()
            .expect("process 0 reports");
        assert_eq!(report.events, 12 * 6);
        assert_eq!(report.curve, want, "{}", plan.describe());
    }
}

/// A slow sink on worker 0 holds every worker's source back, and still gets every batch once,
/// in order. The bound is twice the window: sources run at most a window ahead of the sink's
/// frontier, and the sink may have received up to a window of batches it has not written yet.
#[test]
fn sources_stay_within_the_read_ahead_window_of_a_slow_sink() {
    use shotflow::source::batched_source;
    use std::sync::atomic::{AtomicU64, Ordering};
    let batches = 60u64;
    let window = Settings::default().read_ahead;
    for workers in [1usize, 2, 3] {
        let produced = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (p, s) = (Arc::clone(&produced), Arc::clone(&seen));
        execute_plan(&Plan::Process { workers }, move |worker| {
            let (p, s, q) = (Arc::clone(&p), Arc::clone(&s), Arc::clone(&p));
            worker.dataflow(|scope| {
                batched_source(scope, "Counted", batches, move |batch| {
                    q.fetch_max(batch + 1, Ordering::SeqCst);
                    Ok::<_, String>(vec![batch])
                })
                .ordered("Slow", move |batch, rows: &[u64]| {
                    std::thread::sleep(std::time::Duration::from_millis(3));
                    // Batches produced beyond this one, which the sink has not finished.
                    let ahead = p.load(Ordering::SeqCst) - (batch + 1);
                    s.lock().unwrap().push((batch, rows.to_vec(), ahead));
                });
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        let seen = seen.lock().unwrap();
        let order: Vec<u64> = seen.iter().map(|(b, _, _)| *b).collect();
        assert_eq!(order, (0..batches).collect::<Vec<_>>(), "{workers} workers");
        assert!(seen.iter().all(|(b, rows, _)| rows == &vec![*b]));
        let most = seen.iter().map(|(_, _, ahead)| *ahead).max().unwrap();
        let bound = 2 * window * workers as u64;
        assert!(
            most <= bound,
            "{workers} workers: a source ran {most} batches ahead of the sink (window {bound})"
        );
        // And it does read ahead: the sink is never starved down to one batch at a time.
        assert!(most >= 1, "{workers} workers: no read-ahead at all");
    }
}

/// How many batches one worker's source ran ahead of a slow ordered sink, at most, in a run
/// launched with `launch`.
fn most_ahead_of_a_slow_sink(launch: &Launch) -> u64 {
    use shotflow::source::batched_source;
    use std::sync::atomic::{AtomicU64, Ordering};
    let produced = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let (p, m) = (Arc::clone(&produced), Arc::clone(&most));
    execute(launch, move |worker| {
        let (p, m, q) = (Arc::clone(&p), Arc::clone(&m), Arc::clone(&p));
        worker.dataflow(|scope| {
            batched_source(scope, "Counted", 40, move |batch| {
                q.fetch_max(batch + 1, Ordering::SeqCst);
                Ok::<_, String>(vec![batch])
            })
            .ordered("Slow", move |batch, _rows: &[u64]| {
                std::thread::sleep(std::time::Duration::from_millis(3));
                m.fetch_max(p.load(Ordering::SeqCst) - (batch + 1), Ordering::SeqCst);
            });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    most.load(Ordering::SeqCst)
}

/// Regression: the window was a process-wide static, so `--read-ahead` was ignored by runs
/// that did not go through `execute(&launch)` (the demo) and `serve`'s window of 1 stayed for
/// every later run in the process. Now it travels with the run: a narrow run reads at most
/// 2 × 1 batches ahead, and the runs after it in the same process are back at the default.
#[test]
fn the_read_ahead_setting_holds_for_its_own_run_and_no_other() {
    // Two workers: with one, source and sink take turns on one thread and never overlap.
    let narrow = Launch {
        read_ahead: Some(1),
        ..Launch::threads(2)
    };
    let default = Settings::default().read_ahead;
    for round in 0..2 {
        let ahead = most_ahead_of_a_slow_sink(&narrow);
        assert!(
            ahead <= 2 * 2,
            "round {round}: --read-ahead 1 ran {ahead} batches ahead"
        );
        let ahead = most_ahead_of_a_slow_sink(&Launch::threads(2));
        assert!(
            (5..=2 * 2 * default).contains(&ahead),
            "round {round}: the default window ({default}) after a narrow run ran {ahead} batches ahead"
        );
    }
}

/// Random numbers keyed by (seed, event id, stream): a bootstrap-style random sub-sample with
/// simulated noise added is the same at 1, 2 and 3 workers as in a plain sequential loop,
/// bit for bit, although the events pass through different workers (and an exchange).
#[test]
fn event_keyed_random_numbers_do_not_depend_on_the_worker_count() {
    use rand::Rng;
    let config = Synthetic {
        events: 5_000,
        batch_size: 64,
        frame: None,
        ..Synthetic::default()
    };
    let keys = config.keys();
    let pick = move |e: &Event| -> Option<(u64, f64)> {
        let keep = e.rng(7, "subsample").gen_bool(0.3);
        let noise: f64 = e.rng(7, "noise").gen_range(-1.0..1.0);
        keep.then(|| (e.id, e.get_f64(keys.pulse_energy).unwrap() + noise))
    };
    let want: Vec<(u64, f64)> = (0..config.events)
        .map(|i| config.event(i))
        .filter_map(|e| pick(&e))
        .collect();
    for workers in 1..=3usize {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (out, config) = (Arc::clone(&got), config.clone());
        execute_plan(&Plan::Process { workers }, move |worker| {
            let (out, config) = (Arc::clone(&out), config.clone());
            worker.dataflow(|scope| {
                scope
                    .synthetic(&config)
                    .exchange(|e: &Event| e.id.wrapping_mul(0x9e37_79b9) >> 7)
                    .flat_map(move |e| pick(&e))
                    .ordered("Collect", move |_, rows: &[(u64, f64)]| {
                        out.lock().unwrap().extend_from_slice(rows)
                    });
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), want.len(), "{workers} workers");
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()),
            "{workers} workers"
        );
        eprintln!(
            "{workers} workers: {} of 5000 events kept, values identical",
            got.len()
        );
    }
}

/// `demo --source xtc2`: the demo on a simulated LCLS-II run, at 1, 2 and 3 workers, equals a
/// plain loop over the run's events (read by the event builder, reduced, cut, folded).
#[test]
fn demo_from_a_simulated_xtc2_run_matches_sequential_reference() {
    use shotflow::xtc2::{EventBuilder, Xtc2Run, Xtc2Simulation};
    let simulation = Xtc2Simulation {
        events: 90,
        events_per_step: 15,
        frame: [64, 32],
        segment: [8, 8],
        photons: 40.0,
        ..Default::default()
    };
    let config = DemoConfig {
        xtc2: Some(simulation.clone()),
        ..DemoConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    simulation.write(dir.path()).unwrap();
    let run = Arc::new(Xtc2Run::open(dir.path()).unwrap());
    let mut builder = EventBuilder::new(Arc::clone(&run), Arc::new(demo::xtc2_selectors()));
    let mut want = demo::Curve::default();
    for entry in &run.events {
        let row = demo::reduce_xtc2(&builder.build(entry).unwrap().event);
        if row.pulse_energy >= config.energy_cut {
            want.add(&row);
        }
    }
    assert!(want.kept > 60 && want.sorted().len() == 6, "{want:?}");
    for plan in plans() {
        let report = demo::run(&config, &plan, Settings::default())
            .unwrap()
            .expect("process 0 reports");
        assert_eq!(report.events, 90);
        assert_eq!(report.curve, want, "{}", plan.describe());
    }
}

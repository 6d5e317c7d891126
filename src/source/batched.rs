//! The one source loop: read-ahead, capabilities, errors. Every source of shotflow (synthetic,
//! EXDF runs, replayed recordings, a live karabo-bridge stream) is this loop plus a closure
//! that says how to make one batch.

use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};

use crate::flow::read_ahead::ReadAhead;
use crate::flow::{meter, Batch, Settings};
use crate::runtime::{fail, stop_requested};

/// Which batches a source produces on this worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Batches `0..batches`, batch `b` on worker `b % peers`: sources whose batch is a function
    /// of its number (a file, a generator, a recording). Every worker advances at the same pace
    /// and the frontier moves steadily.
    Owned {
        /// Number of batches of the run.
        batches: Batch,
    },
    /// Batches `0, 1, 2, ...` on worker 0 only, until the producer says the stream has ended: a
    /// live stream, whose batches follow arrival and which has one reader.
    Live,
}

/// What a producer made of one batch number.
#[derive(Debug)]
pub enum Produced<D> {
    /// The rows of the batch.
    Batch(Vec<D>),
    /// The batch is not due yet (a paced replay): ask again after this long.
    NotYet(Duration),
    /// There are no more batches (live streams only; owned schedules end by themselves).
    End,
}

/// Which batches of `0..batches` worker `index` of `peers` owns, in increasing order.
///
/// # Examples
///
/// ```
/// use shotflow::source::owned_batches;
/// assert_eq!(owned_batches(7, 1, 3).collect::<Vec<_>>(), vec![1, 4]);
/// ```
pub fn owned_batches(batches: u64, index: usize, peers: usize) -> impl Iterator<Item = Batch> {
    (index as u64..batches).step_by(peers.max(1))
}

/// A source operator named `name` that produces the batches `schedule` gives this worker, each
/// only when the read-ahead window allows it ([`crate::flow::read_ahead`]), by calling
/// `producer(batch)`. An error ends the run with the operator's name, the batch and the
/// message.
///
/// An owned schedule starts at the run's [`Settings::start`] (a resumed run skips the batches
/// its output committed). When the run is asked to stop ([`crate::runtime::request_stop`]),
/// the source produces nothing more and records the batch it stopped before
/// ([`crate::flow::read_ahead::SourcesEnded`]).
///
/// # Examples
///
/// A live source: a counter that ends after three batches, read by worker 0 only.
///
/// ```
/// use shotflow::source::{source_loop, Produced, Schedule};
/// use timely::dataflow::operators::capture::{Capture, Extract};
///
/// let captured = timely::example(|scope| {
///     source_loop(scope, "Live", Schedule::Live, |batch| {
///         Ok(if batch < 3 { Produced::Batch(vec![batch]) } else { Produced::End })
///     })
///     .capture()
/// });
/// let all: Vec<u64> = captured.extract().into_iter().flat_map(|(_, rows)| rows).collect();
/// assert_eq!(all, vec![0, 1, 2]);
/// ```
pub fn source_loop<'scope, D, P>(
    scope: Scope<'scope, Batch>,
    name: &str,
    schedule: Schedule,
    mut producer: P,
) -> StreamVec<'scope, Batch, D>
where
    D: 'static,
    P: FnMut(Batch) -> Result<Produced<D>, String> + 'static,
{
    let operator = name.to_string();
    let operator_name = operator.clone();
    source::<_, CapacityContainerBuilder<Vec<D>>, _, _>(scope, name, move |capability, info| {
        let read_ahead = ReadAhead::new(&scope, scope.activator_for(info.address));
        let (index, peers) = (scope.index(), scope.peers());
        let step = match schedule {
            Schedule::Owned { .. } => peers as Batch,
            Schedule::Live => 1,
        };
        let end = match schedule {
            Schedule::Owned { batches } => batches,
            Schedule::Live => Batch::MAX,
        };
        let start = Settings::of(&scope).start;
        let mut next = match schedule {
            // The first batch from `start` on that this worker owns.
            Schedule::Owned { .. } => {
                let peers = peers as Batch;
                start + (index as Batch + peers - start % peers) % peers
            }
            // A live stream has one reader: the other workers hold no capability at all.
            Schedule::Live => {
                if index == 0 {
                    0
                } else {
                    end
                }
            }
        };
        if schedule == Schedule::Live && start > 0 && index == 0 {
            fail(format!(
                "source {operator:?}: a live stream cannot be resumed (it cannot be read again from batch {start})"
            ));
            next = end;
        }
        let mut capability = (next < end).then_some(capability);
        if capability.is_none() {
            read_ahead.ended(Batch::MAX);
        }
        if let Schedule::Owned { .. } = schedule {
            meter::plan(end.saturating_sub(next).div_ceil(step));
        }
        // Since when the sinks hold this source back, while they do.
        let mut held_since: Option<Instant> = None;
        let release = move |held_since: &mut Option<Instant>| {
            if let Some(since) = held_since.take() {
                meter::held(false);
                meter::held_back(&operator_name, since.elapsed().as_nanos() as u64);
            }
        };
        move |output| {
            let Some(cap) = capability.as_mut() else {
                return;
            };
            if stop_requested().is_some() {
                release(&mut held_since);
                read_ahead.ended(next);
                capability = None;
                return;
            }
            // Before asking: a resumed run's sinks wait for the frontier to reach its start.
            cap.downgrade(&next);
            if !read_ahead.allows(next) {
                if held_since.is_none() {
                    held_since = Some(Instant::now());
                    meter::held(true);
                }
                return;
            }
            release(&mut held_since);
            match producer(next) {
                Ok(Produced::Batch(mut rows)) => {
                    meter::produced(rows.len() as u64);
                    if !rows.is_empty() {
                        output.session(&*cap).give_container(&mut rows);
                    }
                    next = next.saturating_add(step);
                    if next < end {
                        cap.downgrade(&next);
                        read_ahead.activator().activate();
                    } else {
                        read_ahead.ended(Batch::MAX);
                        capability = None;
                    }
                }
                Ok(Produced::NotYet(wait)) => read_ahead.activator().activate_after(wait),
                Ok(Produced::End) => {
                    read_ahead.ended(Batch::MAX);
                    capability = None;
                }
                Err(e) => {
                    fail(format!("source {operator:?}, batch {next}: {e}"));
                    capability = None;
                }
            }
        }
    })
}

/// A source operator that produces batches `0..batches`, each on its owning worker, by calling
/// `produce(batch)`: [`source_loop`] with an owned schedule. An error ends the run with the
/// operator's name and the message.
///
/// File readers and generators build on it: they only say how to make one batch.
///
/// # Examples
///
/// ```
/// use shotflow::source::batched_source;
/// use timely::dataflow::operators::capture::{Capture, Extract};
///
/// let captured = timely::example(|scope| {
///     batched_source(scope, "numbers", 3, |batch| Ok::<_, String>(vec![batch * 10, batch * 10 + 1]))
///         .capture()
/// });
/// let all: Vec<u64> = captured.extract().into_iter().flat_map(|(_, rows)| rows).collect();
/// assert_eq!(all, vec![0, 1, 10, 11, 20, 21]);
/// ```
pub fn batched_source<'scope, D, E, F>(
    scope: Scope<'scope, Batch>,
    name: &str,
    batches: u64,
    mut produce: F,
) -> StreamVec<'scope, Batch, D>
where
    D: 'static,
    E: std::fmt::Display,
    F: FnMut(Batch) -> Result<Vec<D>, E> + 'static,
{
    source_loop(scope, name, Schedule::Owned { batches }, move |batch| {
        produce(batch)
            .map(Produced::Batch)
            .map_err(|e| e.to_string())
    })
}

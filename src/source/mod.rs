//! Sources: where events enter the dataflow.
//!
//! A source splits a run into batches numbered `0..n` in event-id order and hands each worker
//! a disjoint share (batch `b` goes to worker `b % peers`, so every worker advances at the same
//! pace and the frontier moves steadily). The timely timestamp of a batch is its number: one
//! timestamp per batch, never per event, because each distinct timestamp costs about a
//! microsecond of progress tracking on every worker.
//!
//! Heavy data (detector frames) are produced on the worker that owns the batch and stay there
//! unless an operator moves them.

pub mod exdf;
pub mod read_ahead;
pub mod synthetic;

pub use synthetic::{Synthetic, SyntheticKeys, SyntheticSource};

use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};

use crate::runtime::fail;
use crate::sink::Batch;

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

/// A source operator that produces batches `0..batches`, each on its owning worker, by calling
/// `produce(batch)`. An error ends the run with the operator's name and the message.
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
    let operator = name.to_string();
    source(scope, name, move |capability, info| {
        let read_ahead = read_ahead::ReadAhead::new(&scope, scope.activator_for(info.address));
        let mut owned = owned_batches(batches, scope.index(), scope.peers()).peekable();
        let mut capability = Some(capability);
        move |output| {
            let Some(cap) = capability.as_mut() else {
                return;
            };
            if owned.peek().is_some_and(|b| !read_ahead.allows(*b)) {
                return;
            }
            match owned.next() {
                Some(batch) => {
                    cap.downgrade(&batch);
                    match produce(batch) {
                        Ok(mut rows) => output.session(&*cap).give_container(&mut rows),
                        Err(e) => {
                            fail(format!("source {operator:?}, batch {batch}: {e}"));
                            capability = None;
                            return;
                        }
                    }
                    match owned.peek() {
                        Some(next) => {
                            cap.downgrade(next);
                            read_ahead.activator().activate();
                        }
                        None => capability = None,
                    }
                }
                None => capability = None,
            }
        }
    })
}

//! Ordered outputs: complete batches, in event order, and the commit point that follows them.
//!
//! [`in_order`] is the one operator behind every ordered output of shotflow. Rows are routed by
//! their batch (all to worker 0, or batch `b` to the worker a function of `b` names), held in
//! an [`InOrder`] buffer until the frontier passes their batch, then handed to an
//! [`OrderedSink`] batch after batch, each batch sorted by event id. After the complete batches
//! of one frontier step the sink is told that everything before the new frontier has been
//! emitted: that is the run's **commit point**, where a sink makes a batch range durable.

use std::sync::Arc;

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use super::SinkError;
use crate::event::HasEventId;
use crate::flow::read_ahead::SinkProgress;
use crate::flow::{Batch, InOrder};
use crate::runtime::fail;

/// A destination that takes complete batches in order.
///
/// Attach one with [`SinkExt::sink_in_order`](super::SinkExt::sink_in_order) (every batch on
/// worker 0), or build a stage with an output of its own with [`in_order`].
///
/// # Examples
///
/// A sink that keeps the running total of each batch on worker 0 and reports it at each commit.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use shotflow::flow::Batch;
/// use shotflow::sink::{OrderedSink, SinkError, SinkExt};
/// use timely::dataflow::operators::ToStream;
///
/// struct Totals { total: u64, log: Arc<Mutex<Vec<(Option<Batch>, u64)>>> }
///
/// impl OrderedSink<u64> for Totals {
///     type Output = ();
///     fn emit(&mut self, _batch: Batch, rows: Vec<u64>, _: &mut Vec<()>) -> Result<(), SinkError> {
///         self.total += rows.iter().sum::<u64>();
///         Ok(())
///     }
///     fn commit(&mut self, upto: Option<Batch>, _: &mut Vec<()>) -> Result<(), SinkError> {
///         self.log.lock().unwrap().push((upto, self.total));
///         Ok(())
///     }
/// }
///
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let sink = Totals { total: 0, log: Arc::clone(&log) };
/// timely::example(move |scope| {
///     (1..=4u64).to_stream(scope).container::<Vec<_>>().sink_in_order("Totals", sink);
/// });
/// assert_eq!(log.lock().unwrap().last(), Some(&(None, 10)));
/// ```
pub trait OrderedSink<D>: 'static {
    /// What the sink passes on downstream (`()` for a plain sink).
    type Output: 'static;

    /// The rows of one complete batch, sorted by event id; batches come in increasing order.
    fn emit(
        &mut self,
        batch: Batch,
        rows: Vec<D>,
        output: &mut Vec<Self::Output>,
    ) -> Result<(), SinkError>;

    /// Every batch before `upto` has been emitted on this worker (`None`: the stream has ended
    /// and every batch has been emitted; this is the last call). The commit point: make what
    /// was emitted durable here.
    fn commit(
        &mut self,
        upto: Option<Batch>,
        output: &mut Vec<Self::Output>,
    ) -> Result<(), SinkError> {
        let _ = (upto, output);
        Ok(())
    }
}

/// An [`OrderedSink`] that calls a closure with each complete batch.
///
/// Usually attached with [`SinkExt::ordered`](super::SinkExt::ordered).
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use shotflow::sink::{Ordered, SinkExt};
/// use shotflow::runtime::{execute, Launch};
/// use timely::dataflow::operators::ToStream;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// execute(&Launch::threads(3), move |worker| {
///     let (index, out) = (worker.index() as u64, Arc::clone(&out));
///     worker.dataflow::<u64, _, _>(|scope| {
///         // each worker holds a third of the ids, in scrambled order
///         (0..30u64).rev().filter(move |x| x % 3 == index)
///             .to_stream(scope).container::<Vec<_>>()
///             .sink_in_order("ordered", Ordered::new(move |_, rows: &[u64]| out.lock().unwrap().extend_from_slice(rows)));
///     });
///     Ok::<_, std::convert::Infallible>(())
/// }).unwrap();
/// assert_eq!(*seen.lock().unwrap(), (0..30).collect::<Vec<u64>>());
/// ```
pub struct Ordered<F> {
    callback: F,
}

impl<F> Ordered<F> {
    /// A sink that calls `callback(batch, rows)` for each complete batch.
    pub fn new(callback: F) -> Self {
        Ordered { callback }
    }
}

impl<D, F> OrderedSink<D> for Ordered<F>
where
    F: FnMut(Batch, &[D]) + 'static,
{
    type Output = ();

    fn emit(&mut self, batch: Batch, rows: Vec<D>, _: &mut Vec<()>) -> Result<(), SinkError> {
        (self.callback)(batch, &rows);
        Ok(())
    }
}

/// Routes batch `b` to worker `route(b) % peers`, holds each batch there until it is complete,
/// and hands complete batches in order to `sink`, followed by a commit at every frontier step.
/// Returns what the sink passes on. A sink error ends the run, naming the operator.
///
/// # Examples
///
/// Batches spread over two workers by parity, each worker emitting its own batches in order.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use shotflow::sink::{in_order, Ordered};
/// use shotflow::runtime::{execute, Launch};
/// use shotflow::source::batched_source;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// execute(&Launch::threads(2), move |worker| {
///     let (out, index) = (Arc::clone(&out), worker.index());
///     worker.dataflow(|scope| {
///         let rows = batched_source(scope, "Rows", 6, |b| Ok::<_, String>(vec![10 * b + 1, 10 * b]));
///         let sink = Ordered::new(move |batch, rows: &[u64]| out.lock().unwrap().push((index, batch, rows.to_vec())));
///         in_order(rows, "ByParity", Arc::new(|batch| batch as usize % 2), sink);
///     });
///     Ok::<_, std::convert::Infallible>(())
/// }).unwrap();
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// assert_eq!(seen[..2], [(0, 0, vec![0, 1]), (0, 2, vec![20, 21])]);
/// assert!(seen[3..].iter().all(|(worker, batch, _)| *worker == 1 && batch % 2 == 1));
/// ```
pub fn in_order<'scope, D, S>(
    stream: StreamVec<'scope, Batch, D>,
    name: &str,
    route: Arc<dyn Fn(Batch) -> usize + Send + Sync>,
    mut sink: S,
) -> StreamVec<'scope, Batch, S::Output>
where
    D: ExchangeData + HasEventId,
    S: OrderedSink<D>,
    S::Output: Clone,
{
    let scope = stream.scope();
    let peers = scope.peers() as u64;
    let progress = SinkProgress::new(&scope);
    let operator = name.to_string();
    // Timely routes by the data, not by the time: rows carry their batch across the exchange.
    let tagged = stream.unary(Pipeline, &format!("{name}Route"), |_, _| {
        move |input, output| {
            input.for_each_time(|time, data| {
                let batch = *time.time();
                output
                    .session(&time)
                    .give_iterator(data.flat_map(|d| d.drain(..)).map(|row| (batch, row)));
            })
        }
    });
    tagged.unary_frontier(
        Exchange::new(move |(batch, _): &(Batch, D)| route(*batch) as u64 % peers),
        name,
        move |capability, _info| {
            let mut capability = Some(capability);
            let mut pending = InOrder::default();
            let mut committed: Option<Option<Batch>> = None;
            move |(input, frontier), output| {
                input.for_each(|time, data| {
                    let mut rows: Vec<D> = data.drain(..).map(|(_, row)| row).collect();
                    pending.insert(*time.time(), &mut rows);
                });
                let now = frontier.frontier().first().copied();
                let Some(cap) = capability.as_mut() else {
                    // Failed (or done): hold nothing, and hold no source back.
                    pending.clear();
                    progress.report(None);
                    return;
                };
                let mut out = Vec::new();
                let mut result = Ok(());
                while result.is_ok() {
                    match pending.pop_complete(now) {
                        Some((batch, rows)) => result = sink.emit(batch, rows, &mut out),
                        None => break,
                    }
                }
                if result.is_ok() && committed != Some(now) {
                    committed = Some(now);
                    result = sink.commit(now, &mut out);
                }
                if !out.is_empty() {
                    output.session(&*cap).give_container(&mut out);
                }
                // After emitting: sources may run a window past what is written, not received.
                progress.report(now);
                match (result, now) {
                    (Err(e), _) => {
                        fail(format!("sink {operator:?}: {e}"));
                        capability = None;
                    }
                    (Ok(()), Some(t)) if *cap.time() < t => cap.downgrade(&t),
                    (Ok(()), Some(_)) => {}
                    (Ok(()), None) => capability = None,
                }
            }
        },
    )
}

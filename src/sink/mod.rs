//! Sinks: where results leave the dataflow.
//!
//! A [`Sink`] receives the rows of each batch that reach its worker, and is told when the
//! frontier passes a batch: from then on no worker can still produce rows for that batch, so an
//! ordered writer may emit it. [`SinkExt::sink_into`] attaches any sink to a timely stream; the
//! sink's [`Routing`] says which worker each row goes to.
//!
//! Ordered outputs implement [`OrderedSink`] instead: they receive complete batches in batch
//! order, each sorted by event id, and a commit after each frontier step ([`in_order`], the one
//! mechanism behind every ordered output: callbacks, the karabo-bridge server, the smalldata
//! writers).
//!
//! Ready sinks: [`SinkExt::for_each_batch`] (a per-worker callback, unordered, no data movement)
//! and [`SinkExt::ordered`] (every row of the run, in event-id order, batch by batch, on
//! worker 0). Sinks compose: attach several to clones of one stream.
//!
//! # Examples
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use shotflow::sink::SinkExt;
//! use timely::dataflow::operators::ToStream;
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let out = Arc::clone(&seen);
//! timely::example(move |scope| {
//!     vec![3u64, 1, 2]
//!         .to_stream(scope)
//!         .container::<Vec<_>>()
//!         .ordered("ordered", move |_batch, ids: &[u64]| out.lock().unwrap().extend_from_slice(ids));
//! });
//! assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
//! ```

mod callback;
mod ordered;

pub use callback::ForEachBatch;
pub use ordered::{in_order, Ordered, OrderedSink};

use std::sync::Arc;

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;
use timely::ExchangeData;

use crate::flow::read_ahead::SinkProgress;
pub use crate::flow::Batch;
use crate::runtime::fail;

/// Why a sink could not take its input.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing to a file or socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being written.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A format's own error (an HDF5 writer's, a socket's), kept typed for callers.
    #[error(transparent)]
    Format(Box<dyn std::error::Error + Send + Sync>),
    /// Any other failure, with its message.
    #[error("{0}")]
    Other(String),
}

impl SinkError {
    /// Wraps a format's error.
    pub fn format(error: impl std::error::Error + Send + Sync + 'static) -> SinkError {
        SinkError::Format(Box::new(error))
    }
}

/// Which worker receives each row.
pub enum Routing<D> {
    /// The worker that produced the row (no data moves).
    Local,
    /// One worker receives every row.
    Worker(usize),
    /// Row `r` goes to worker `route(r) % peers`.
    By(Arc<dyn Fn(&D) -> u64 + Send + Sync>),
}

/// A destination for the rows of a stream.
///
/// Implement it to attach your own output (a database, a live plot, a socket); the engine calls
/// it from the worker that [`Routing`] chooses.
///
/// # Examples
///
/// ```
/// use shotflow::sink::{Batch, Routing, Sink, SinkError, SinkExt};
/// use timely::dataflow::operators::ToStream;
///
/// /// Counts rows and completed batches on each worker.
/// struct Counter { rows: usize, complete_upto: Option<Batch> }
///
/// impl Sink<u64> for Counter {
///     fn routing(&self) -> Routing<u64> { Routing::Local }
///     fn write(&mut self, _batch: Batch, rows: &mut Vec<u64>) -> Result<(), SinkError> {
///         self.rows += rows.len();
///         Ok(())
///     }
///     fn advance(&mut self, frontier: Option<Batch>) -> Result<(), SinkError> {
///         self.complete_upto = frontier;
///         Ok(())
///     }
///     fn finish(&mut self) -> Result<(), SinkError> {
///         assert_eq!(self.rows, 5);
///         Ok(())
///     }
/// }
///
/// timely::example(|scope| {
///     (0..5u64).to_stream(scope).container::<Vec<_>>().sink_into("count", Counter { rows: 0, complete_upto: None });
/// });
/// ```
pub trait Sink<D>: 'static {
    /// Where rows go. Called once, when the sink is attached.
    fn routing(&self) -> Routing<D>;
    /// Rows of `batch` that reached this worker; batches arrive in no particular order and a
    /// batch may arrive in several parts. The sink may take the rows (`std::mem::take`).
    fn write(&mut self, batch: Batch, rows: &mut Vec<D>) -> Result<(), SinkError>;
    /// Every batch before `frontier` is complete on this worker (`None`: all are). Called
    /// whenever the frontier moves, in increasing order.
    fn advance(&mut self, frontier: Option<Batch>) -> Result<(), SinkError> {
        let _ = frontier;
        Ok(())
    }
    /// The stream has ended; called once, after the last `advance(None)`.
    fn finish(&mut self) -> Result<(), SinkError>;
}

/// Attaches sinks to timely streams of batches.
pub trait SinkExt<D: 'static> {
    /// Feeds the stream into `sink`, under the operator name `name`.
    fn sink_into<S: Sink<D>>(self, name: &str, sink: S);

    /// Calls `callback(batch, rows)` on each worker for the rows that worker produced: no data
    /// moves between workers and nothing waits, so it is the fastest way out.
    fn for_each_batch<F>(self, name: &str, callback: F)
    where
        F: FnMut(Batch, &[D]) + 'static,
        Self: Sized,
    {
        self.sink_into(name, ForEachBatch::new(callback));
    }

    /// Feeds every row of the run to `sink` on worker 0, batch after batch in increasing batch
    /// order, each batch sorted by event id, as soon as the frontier says the batch is complete
    /// (see [`OrderedSink`]).
    fn sink_in_order<S>(self, name: &str, sink: S)
    where
        D: crate::event::HasEventId,
        S: OrderedSink<D, Output = ()>;

    /// Calls `callback(batch, rows)` on worker 0 for every row of the run, batch after batch in
    /// increasing batch order, each batch sorted by event id, as soon as the frontier says the
    /// batch is complete.
    fn ordered<F>(self, name: &str, callback: F)
    where
        D: crate::event::HasEventId,
        F: FnMut(Batch, &[D]) + 'static,
        Self: Sized,
    {
        self.sink_in_order(name, Ordered::new(callback));
    }
}

impl<D: ExchangeData> SinkExt<D> for StreamVec<'_, Batch, D> {
    fn sink_in_order<S>(self, name: &str, sink: S)
    where
        D: crate::event::HasEventId,
        S: OrderedSink<D, Output = ()>,
    {
        in_order(self, name, Arc::new(|_| 0), sink);
    }

    fn sink_into<S: Sink<D>>(self, name: &str, sink: S) {
        let peers = self.scope().peers() as u64;
        let operator = name.to_string();
        let progress = SinkProgress::new(&self.scope());
        match sink.routing() {
            Routing::Local => self.sink(Pipeline, name, drive(operator, sink, progress)),
            Routing::Worker(target) => {
                let target = target as u64;
                self.sink(
                    Exchange::new(move |_: &D| target),
                    name,
                    drive(operator, sink, progress),
                )
            }
            Routing::By(route) => self.sink(
                Exchange::new(move |row: &D| route(row) % peers),
                name,
                drive(operator, sink, progress),
            ),
        }
    }
}

/// The operator logic shared by every routing: hand over rows, report frontier moves, stop
/// the run on the first error.
fn drive<D, S, I>(
    name: String,
    mut sink: S,
    progress: SinkProgress,
) -> impl FnMut((&mut I, &MutableAntichain<Batch>))
where
    S: Sink<D>,
    I: ForEachTime<D>,
{
    let mut reported: Option<Option<Batch>> = None;
    let mut broken = false;
    move |(input, frontier)| {
        if broken {
            input.discard();
            progress.report(None);
            return;
        }
        let mut result = Ok(());
        input.each(&mut |batch, rows| {
            if result.is_ok() {
                result = sink.write(batch, rows);
            }
        });
        let now = frontier.frontier().first().copied();
        if result.is_ok() && reported != Some(now) {
            reported = Some(now);
            result = sink.advance(now);
            if result.is_ok() && now.is_none() {
                result = sink.finish();
            }
        }
        progress.report(now);
        if let Err(e) = result {
            broken = true;
            fail(format!("sink {name:?}: {e}"));
        }
    }
}

/// Reading a sink's input, whatever the channel it came through.
trait ForEachTime<D> {
    fn each(&mut self, logic: &mut dyn FnMut(Batch, &mut Vec<D>));
    fn discard(&mut self) {
        self.each(&mut |_, _| {});
    }
}

impl<D, P> ForEachTime<D>
    for timely::dataflow::operators::generic::InputHandleCore<Batch, Vec<D>, P>
where
    P: timely::communication::Pull<timely::dataflow::channels::Message<Batch, Vec<D>>>,
{
    fn each(&mut self, logic: &mut dyn FnMut(Batch, &mut Vec<D>)) {
        self.for_each(|time, data| logic(*time.time(), data));
    }
}

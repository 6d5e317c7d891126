//! The karabo-bridge client source.

use std::collections::VecDeque;
use std::time::Duration;

use timely::dataflow::{Scope, StreamVec};

use super::{protocol, BridgeError, Pattern};
use crate::event::Event;
use crate::flow::Batch;
use crate::source::{source_loop, Produced, Schedule};

/// A connection to a karabo-bridge server, over one or several ZeroMQ sockets.
///
/// With `connections > 1` the client keeps a train in flight on every connection, each its own
/// TCP stream: on loopback one stream moves 1.7–1.8 GB/s on a 2-core machine and two move
/// 2.6–2.9 GB/s, which helps when the machine has cores to spare for the extra stream (on the
/// 2-core bench machine it does not: `cargo bench --bench bridge`). Trains still come out in
/// train-id order: with REQ, every round asks each connection for one train and sorts the
/// answers before handing them out; with PULL, what arrives within one poll is sorted.
///
/// # Examples
///
/// ```no_run
/// use shotflow::bridge::{client::Client, Pattern};
/// use std::time::Duration;
///
/// let mut client = Client::connect("tcp://127.0.0.1:4545", Pattern::Rep, Duration::from_secs(10))?;
/// while let Some(train) = client.next_train()? {
///     println!("train {} with {} fields", train.id, train.fields().len());
/// }
/// # Ok::<(), shotflow::bridge::BridgeError>(())
/// ```
pub struct Client {
    endpoint: String,
    sockets: Vec<zmq::Socket>,
    pattern: Pattern,
    _context: zmq::Context,
    timeout: Duration,
    ready: VecDeque<Event>,
    ended: bool,
    limit: Option<u64>,
    asked: u64,
    delivered: u64,
    /// Trains that could not be decoded (counted and skipped).
    pub skipped_trains: u64,
    /// Values without a shotflow type (strings, lists), left out.
    pub skipped_values: u64,
}

impl Client {
    /// Connects to `endpoint` (e.g. `tcp://127.0.0.1:4545`) over one socket; `timeout`
    /// bounds every wait.
    pub fn connect(
        endpoint: &str,
        pattern: Pattern,
        timeout: Duration,
    ) -> Result<Client, BridgeError> {
        Client::connect_parallel(endpoint, pattern, timeout, 1)
    }

    /// Connects `connections` sockets (at least one) to `endpoint`, each with its own TCP
    /// stream and ZeroMQ I/O thread.
    pub fn connect_parallel(
        endpoint: &str,
        pattern: Pattern,
        timeout: Duration,
        connections: usize,
    ) -> Result<Client, BridgeError> {
        let kind = match pattern {
            Pattern::Rep => zmq::REQ,
            Pattern::Push => zmq::PULL,
        };
        let connections = connections.max(1);
        let context = super::context(endpoint, connections)?;
        let sockets = (0..connections)
            .map(|_| super::socket(&context, kind, endpoint, timeout, false))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Client {
            endpoint: endpoint.to_string(),
            sockets,
            pattern,
            _context: context,
            timeout,
            ready: VecDeque::new(),
            ended: false,
            limit: None,
            asked: 0,
            delivered: 0,
            skipped_trains: 0,
            skipped_values: 0,
        })
    }

    /// Asks for at most `trains` trains in all (REQ), so that a parallel client does not
    /// leave requests unanswered when it has what it wants.
    pub fn limit(mut self, trains: Option<u64>) -> Client {
        self.limit = trains;
        self
    }

    /// The next train, or `None` when the server did not answer within the timeout (gone, or
    /// out of data) or the limit is reached. A malformed message is skipped, counted and
    /// logged.
    pub fn next_train(&mut self) -> Result<Option<Event>, BridgeError> {
        loop {
            if self.limit.is_some_and(|l| self.delivered >= l) {
                return Ok(None);
            }
            if let Some(event) = self.ready.pop_front() {
                self.delivered += 1;
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            match self.pattern {
                Pattern::Rep => self.request_round()?,
                Pattern::Push => self.pull_round()?,
            }
        }
    }

    fn zmq_err(&self, source: zmq::Error) -> BridgeError {
        BridgeError::Zmq {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    /// One `next` on every connection (up to the limit), then every answer, sorted.
    fn request_round(&mut self) -> Result<(), BridgeError> {
        let want = self.limit.map_or(self.sockets.len() as u64, |l| {
            l.saturating_sub(self.asked).min(self.sockets.len() as u64)
        }) as usize;
        if want == 0 {
            self.ended = true;
            return Ok(());
        }
        let mut asked = 0;
        for socket in &self.sockets[..want] {
            match socket.send("next", 0) {
                Ok(()) => asked += 1,
                Err(zmq::Error::EAGAIN) => {
                    self.ended = true;
                    break;
                }
                Err(e) => return Err(self.zmq_err(e)),
            }
        }
        self.asked += asked as u64;
        let mut round = Vec::with_capacity(asked);
        for i in 0..asked {
            match receive(&self.sockets[i]) {
                Ok(parts) => round.push(parts),
                // No answer: the server is gone or out of trains. Every socket that was asked
                // and not answered is now stuck (REQ), so this client ends here.
                Err(zmq::Error::EAGAIN) => {
                    self.ended = true;
                    break;
                }
                Err(e) => return Err(self.zmq_err(e)),
            }
        }
        self.decode_sorted(round);
        Ok(())
    }

    /// Whatever every connection has within the timeout, sorted.
    fn pull_round(&mut self) -> Result<(), BridgeError> {
        let mut items: Vec<_> = self
            .sockets
            .iter()
            .map(|s| s.as_poll_item(zmq::POLLIN))
            .collect();
        let ms = self.timeout.as_millis().min(i64::MAX as u128) as i64;
        let readable = zmq::poll(&mut items, ms).map_err(|e| self.zmq_err(e))?;
        if readable == 0 {
            self.ended = true;
            return Ok(());
        }
        let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
        let mut round = Vec::new();
        for (socket, _) in self.sockets.iter().zip(ready).filter(|(_, r)| *r) {
            match receive(socket) {
                Ok(parts) => round.push(parts),
                Err(zmq::Error::EAGAIN) => {}
                Err(e) => return Err(self.zmq_err(e)),
            }
        }
        self.decode_sorted(round);
        Ok(())
    }

    fn decode_sorted(&mut self, round: Vec<Vec<zmq::Message>>) {
        let start = self.ready.len();
        for parts in round {
            match protocol::decode(&parts) {
                Ok((event, skipped)) => {
                    self.skipped_values += skipped as u64;
                    self.ready.push_back(event);
                }
                Err(e) => {
                    self.skipped_trains += 1;
                    tracing::warn!(
                        "{}: {e}; train skipped ({} so far)",
                        self.endpoint,
                        self.skipped_trains
                    );
                }
            }
        }
        self.ready.make_contiguous()[start..].sort_by_key(|e| e.id);
    }
}

/// One multipart message, as ZeroMQ's own buffers (no copy).
fn receive(socket: &zmq::Socket) -> Result<Vec<zmq::Message>, zmq::Error> {
    let mut parts = Vec::new();
    loop {
        let part = socket.recv_msg(0)?;
        let more = part.get_more();
        parts.push(part);
        if !more {
            return Ok(parts);
        }
    }
}

/// Where and how a [`BridgeSource`] connects.
///
/// # Examples
///
/// ```
/// use shotflow::bridge::{client::ClientConfig, Pattern};
/// use std::time::Duration;
///
/// let config = ClientConfig::new("tcp://127.0.0.1:4545")
///     .pattern(Pattern::Push)
///     .connections(2)
///     .max_trains(Some(1000))
///     .timeout(Duration::from_secs(5));
/// assert_eq!(config.connections, 2);
/// ```
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// ZeroMQ endpoint, e.g. `tcp://127.0.0.1:4545`.
    pub endpoint: String,
    /// REQ (the server is REP) or PULL (the server is PUSH).
    pub pattern: Pattern,
    /// Sockets, each with a train in flight (see [`Client`]).
    pub connections: usize,
    /// Trains to receive; `None`: until the server stays silent for `timeout`.
    pub max_trains: Option<u64>,
    /// Trains per timely batch (one timestamp).
    pub trains_per_batch: usize,
    /// Longest wait for a train before the stream ends.
    pub timeout: Duration,
}

impl ClientConfig {
    /// REQ, one connection, all trains, 4 trains per batch, 10 s timeout.
    pub fn new(endpoint: &str) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.to_string(),
            pattern: Pattern::Rep,
            connections: 1,
            max_trains: None,
            trains_per_batch: 4,
            timeout: Duration::from_secs(10),
        }
    }
    /// Sets [`ClientConfig::pattern`].
    pub fn pattern(mut self, pattern: Pattern) -> Self {
        self.pattern = pattern;
        self
    }
    /// Sets [`ClientConfig::connections`].
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections.max(1);
        self
    }
    /// Sets [`ClientConfig::max_trains`].
    pub fn max_trains(mut self, trains: Option<u64>) -> Self {
        self.max_trains = trains;
        self
    }
    /// Sets [`ClientConfig::trains_per_batch`].
    pub fn trains_per_batch(mut self, trains: usize) -> Self {
        self.trains_per_batch = trains.max(1);
        self
    }
    /// Sets [`ClientConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Connects.
    pub fn connect(&self) -> Result<Client, BridgeError> {
        Ok(
            Client::connect_parallel(&self.endpoint, self.pattern, self.timeout, self.connections)?
                .limit(self.max_trains),
        )
    }
}

/// Adds a karabo-bridge client as a source.
pub trait BridgeSource<'scope> {
    /// Receives trains as `config` says on worker 0 (a live stream has one reader; the other
    /// workers take part in what follows an exchange), one event per train, and ends when
    /// `max_trains` arrived or the server stays silent for `timeout`. A server that cannot
    /// be reached or fails ends the run with an error naming the endpoint.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use shotflow::bridge::client::{BridgeSource, ClientConfig};
    /// use shotflow::sink::SinkExt;
    ///
    /// timely::execute_directly(|worker| {
    ///     worker.dataflow::<u64, _, _>(|scope| {
    ///         scope
    ///             .karabo_bridge(&ClientConfig::new("tcp://127.0.0.1:4545").max_trains(Some(10)))
    ///             .for_each_batch("Print", |_, trains| {
    ///                 for train in trains {
    ///                     println!("train {}", train.id)
    ///                 }
    ///             });
    ///     });
    /// });
    /// ```
    fn karabo_bridge(self, config: &ClientConfig) -> StreamVec<'scope, Batch, Event>;
}

impl<'scope> BridgeSource<'scope> for Scope<'scope, Batch> {
    fn karabo_bridge(self, config: &ClientConfig) -> StreamVec<'scope, Batch, Event> {
        let config = config.clone();
        let mut client: Option<Client> = None;
        let mut received = 0u64;
        let mut ended = false;
        let losses = crate::flow::Losses::new(&self);
        let mut skipped = 0u64;
        source_loop(self, "KaraboBridge", Schedule::Live, move |batch| {
            if ended {
                return Ok(Produced::End);
            }
            // Connect on first use: a slow dataflow then stops asking (REQ) or taking (PULL)
            // through the read-ahead window, and the server waits.
            let c = match client.as_mut() {
                Some(c) => c,
                None => client.insert(config.connect().map_err(|e| e.to_string())?),
            };
            let mut events = Vec::with_capacity(config.trains_per_batch);
            while events.len() < config.trains_per_batch.max(1) {
                let next = c.next_train().map_err(|e| e.to_string())?;
                // Malformed trains are counted against the batch they would have been in.
                losses.count(
                    batch,
                    &config.endpoint,
                    "malformed message",
                    c.skipped_trains - skipped,
                );
                skipped = c.skipped_trains;
                match next {
                    Some(event) => {
                        received += 1;
                        crate::flow::meter::read(event.nbytes() as u64);
                        events.push(event);
                    }
                    None => {
                        if config.max_trains.is_none_or(|m| received < m) {
                            tracing::warn!(
                                "{}: no train within {:?} after {received} trains; the stream ends",
                                config.endpoint,
                                config.timeout
                            );
                        }
                        if c.skipped_trains > 0 {
                            tracing::warn!(
                                "{}: {} malformed trains skipped",
                                config.endpoint,
                                c.skipped_trains
                            );
                        }
                        ended = true;
                        break;
                    }
                }
            }
            Ok(if events.is_empty() {
                Produced::End
            } else {
                Produced::Batch(events)
            })
        })
    }
}

//! The karabo-bridge client source.

use std::time::Duration;

use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};

use super::{protocol, BridgeError, Pattern};
use crate::event::Event;
use crate::runtime::fail;
use crate::sink::Batch;

/// A connection to a karabo-bridge server.
pub struct Client {
    endpoint: String,
    socket: zmq::Socket,
    pattern: Pattern,
    _context: zmq::Context,
    /// Trains that could not be decoded (counted and skipped).
    pub skipped_trains: u64,
    /// Values without a shotflow type (strings, lists), left out.
    pub skipped_values: u64,
}

impl Client {
    /// Connects to `endpoint` (e.g. `tcp://127.0.0.1:4545`); `timeout` bounds every wait.
    pub fn connect(
        endpoint: &str,
        pattern: Pattern,
        timeout: Duration,
    ) -> Result<Client, BridgeError> {
        let kind = match pattern {
            Pattern::Rep => zmq::REQ,
            Pattern::Push => zmq::PULL,
        };
        let (context, socket) = super::socket(kind, endpoint, timeout, false)?;
        Ok(Client {
            endpoint: endpoint.to_string(),
            socket,
            pattern,
            _context: context,
            skipped_trains: 0,
            skipped_values: 0,
        })
    }

    /// The next train, or `None` when the server did not answer within the timeout (gone, or
    /// out of data). A malformed message is skipped, counted and logged.
    pub fn next_train(&mut self) -> Result<Option<Event>, BridgeError> {
        loop {
            if self.pattern == Pattern::Rep {
                match self.socket.send("next", 0) {
                    Ok(()) => {}
                    Err(zmq::Error::EAGAIN) => return Ok(None),
                    Err(e) => {
                        return Err(BridgeError::Zmq {
                            endpoint: self.endpoint.clone(),
                            source: e,
                        })
                    }
                }
            }
            let parts = match self.socket.recv_multipart(0) {
                Ok(parts) => parts,
                Err(zmq::Error::EAGAIN) => return Ok(None),
                Err(e) => {
                    return Err(BridgeError::Zmq {
                        endpoint: self.endpoint.clone(),
                        source: e,
                    })
                }
            };
            match protocol::decode(&parts) {
                Ok((event, skipped)) => {
                    self.skipped_values += skipped as u64;
                    return Ok(Some(event));
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
    }
}

/// Adds a karabo-bridge client as a source.
pub trait BridgeSource<'scope> {
    /// Receives up to `max_trains` trains (all, with `None`) from `endpoint` on worker 0, in
    /// batches of `trains_per_batch`, and ends when the server stays silent for `timeout`.
    fn karabo_bridge(
        self,
        endpoint: &str,
        pattern: Pattern,
        max_trains: Option<u64>,
        trains_per_batch: usize,
        timeout: Duration,
    ) -> StreamVec<'scope, Batch, Event>;
}

impl<'scope> BridgeSource<'scope> for Scope<'scope, Batch> {
    fn karabo_bridge(
        self,
        endpoint: &str,
        pattern: Pattern,
        max_trains: Option<u64>,
        trains_per_batch: usize,
        timeout: Duration,
    ) -> StreamVec<'scope, Batch, Event> {
        let scope = self;
        let endpoint = endpoint.to_string();
        source::<_, timely::container::CapacityContainerBuilder<Vec<Event>>, _, _>(
            self,
            "KaraboBridge",
            move |capability, info| {
                let activator = scope.activator_for(info.address);
                // A live stream has one reader; the other workers take part in what follows.
                let mut capability = (scope.index() == 0).then_some(capability);
                let mut client = None;
                let (mut batch, mut received) = (0u64, 0u64);
                move |output| {
                    let Some(cap) = capability.as_mut() else {
                        return;
                    };
                    if client.is_none() {
                        match Client::connect(&endpoint, pattern, timeout) {
                            Ok(c) => client = Some(c),
                            Err(e) => {
                                fail(format!("karabo-bridge: {e}"));
                                capability = None;
                                return;
                            }
                        }
                    }
                    let c = client.as_mut().expect("connected");
                    let mut events = Vec::with_capacity(trains_per_batch);
                    let mut ended = false;
                    while events.len() < trains_per_batch.max(1)
                        && max_trains.is_none_or(|m| received < m)
                    {
                        match c.next_train() {
                            Ok(Some(event)) => {
                                received += 1;
                                events.push(event);
                            }
                            Ok(None) => {
                                tracing::warn!("{endpoint}: no train within {timeout:?} after {received} trains; the stream ends");
                                ended = true;
                                break;
                            }
                            Err(e) => {
                                fail(format!("karabo-bridge: {e}"));
                                capability = None;
                                return;
                            }
                        }
                    }
                    if !events.is_empty() {
                        cap.downgrade(&batch);
                        output.session(&*cap).give_container(&mut events);
                        batch += 1;
                    }
                    if ended || max_trains.is_some_and(|m| received >= m) {
                        if c.skipped_trains > 0 {
                            tracing::warn!(
                                "{endpoint}: {} malformed trains skipped",
                                c.skipped_trains
                            );
                        }
                        capability = None;
                    } else {
                        cap.downgrade(&batch);
                        activator.activate();
                    }
                }
            },
        )
    }
}

//! The karabo-bridge server sink: events leave as trains, in event order, from worker 0.

use std::borrow::Cow;
use std::os::raw::c_void;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{protocol, BridgeError, Pattern};
use crate::event::Event;
use crate::flow::Batch;
use crate::sink::{OrderedSink, SinkError};

/// A bound karabo-bridge socket.
pub struct Server {
    endpoint: String,
    socket: zmq::Socket,
    pattern: Pattern,
    _context: zmq::Context,
    /// Trains sent.
    pub sent: u64,
    pace: Option<(f64, Instant)>,
    /// The last train sent.
    first_train: Option<u64>,
    /// When the next train is due, from `pace`'s start.
    due: Duration,
}

/// Longest gap of train ids that paced serving waits for (10 s at 10 Hz).
const MAX_GAP_TRAINS: u64 = 100;

impl Server {
    /// Binds `endpoint`. With REP, every train waits (at most `timeout`) for a client's
    /// `next`; with PUSH, for a client to take it. `pace = Some(speed)` sends trains at 10 Hz
    /// (EuXFEL's train rate) times `speed`.
    pub fn bind(
        endpoint: &str,
        pattern: Pattern,
        timeout: Duration,
        pace: Option<f64>,
    ) -> Result<Server, BridgeError> {
        let kind = match pattern {
            Pattern::Rep => zmq::REP,
            Pattern::Push => zmq::PUSH,
        };
        // Two I/O threads: clients with several connections are sent to in parallel.
        let context = super::context(endpoint, 2)?;
        let socket = super::socket(&context, kind, endpoint, timeout, true)?;
        Ok(Server {
            endpoint: endpoint.to_string(),
            socket,
            pattern,
            _context: context,
            sent: 0,
            pace: pace.map(|s| (s, Instant::now())),
            first_train: None,
            due: Duration::ZERO,
        })
    }

    /// Sends one train. Returns false when no client asked or took it within the timeout.
    ///
    /// Contiguous arrays are not copied: ZeroMQ sends them from the event's memory and drops
    /// the event when its I/O thread is done with the last of them.
    pub fn send(&mut self, event: Event) -> Result<bool, BridgeError> {
        let zmq_err = |endpoint: &str, e| BridgeError::Zmq {
            endpoint: endpoint.to_string(),
            source: e,
        };
        if let Some((speed, started)) = self.pace {
            // Trains are due at 10 Hz by train id; a gap of more than MAX_GAP_TRAINS (a pause
            // of the run, or a jump of the train counter) is served as one train interval.
            let previous = self.first_train.replace(event.id);
            if let Some(previous) = previous {
                let gap = event.id.saturating_sub(previous);
                let trains = if gap > MAX_GAP_TRAINS {
                    eprintln!(
                        "warning: train {} follows train {previous} after a gap of {gap} trains: \
                         served one train interval later",
                        event.id
                    );
                    1
                } else {
                    gap.max(1)
                };
                self.due += Duration::from_secs_f64(trains as f64 / 10.0 / speed);
            }
            if let Some(wait) = self.due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if self.pattern == Pattern::Rep {
            match self.socket.recv_bytes(0) {
                Ok(_) => {}
                Err(zmq::Error::EAGAIN) => return Ok(false),
                Err(e) => return Err(zmq_err(&self.endpoint, e)),
            }
        }
        let event = Arc::new(event);
        let parts = protocol::encode_parts(&event);
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.into_iter().enumerate() {
            let flags = if i < last { zmq::SNDMORE } else { 0 };
            let sent = match part {
                Cow::Owned(bytes) => self.socket.send(bytes, flags),
                Cow::Borrowed(bytes) => send_borrowed(&mut self.socket, bytes, &event, flags),
            };
            match sent {
                Ok(()) => {}
                // Only the first part can wait (ZeroMQ queues a message's parts together).
                Err(zmq::Error::EAGAIN) => return Ok(false),
                Err(e) => return Err(zmq_err(&self.endpoint, e)),
            }
        }
        self.sent += 1;
        Ok(true)
    }
}

/// Hands ZeroMQ `bytes`, which lie inside `*owner`, without copying them.
fn send_borrowed(
    socket: &mut zmq::Socket,
    bytes: &[u8],
    owner: &Arc<Event>,
    flags: i32,
) -> Result<(), zmq::Error> {
    if bytes.is_empty() {
        return socket.send(Vec::new(), flags);
    }
    unsafe extern "C" fn release(_data: *mut c_void, hint: *mut c_void) {
        // SAFETY: `hint` is the `Arc::into_raw` below; ZeroMQ calls this exactly once.
        drop(unsafe { Arc::from_raw(hint as *const Event) });
    }
    let hint = Arc::into_raw(Arc::clone(owner)) as *mut c_void;
    let mut message = zmq_sys::zmq_msg_t { __: [0; 64] };
    // SAFETY: `bytes` lies inside the event behind the Arc, which the clone passed as `hint`
    // keeps alive and in place until ZeroMQ calls `release` (after sending, or when closing
    // the message). ZeroMQ only reads the data of a message built with zmq_msg_init_data.
    unsafe {
        if zmq_sys::zmq_msg_init_data(
            &mut message,
            bytes.as_ptr() as *mut c_void,
            bytes.len(),
            Some(release),
            hint,
        ) != 0
        {
            drop(Arc::from_raw(hint as *const Event));
            return Err(zmq::Error::from_raw(zmq_sys::zmq_errno()));
        }
        if zmq_sys::zmq_msg_send(&mut message, socket.as_mut_ptr(), flags) == -1 {
            let error = zmq::Error::from_raw(zmq_sys::zmq_errno());
            zmq_sys::zmq_msg_close(&mut message);
            return Err(error);
        }
    }
    Ok(())
}

/// An ordered sink that serves every event of the stream as a karabo-bridge train, in event
/// order, from worker 0 (attach it with
/// [`SinkExt::sink_in_order`](crate::sink::SinkExt::sink_in_order)). The socket lives on a
/// sender thread fed through a short bounded channel, so reading and reducing the next trains
/// overlap with encoding and sending this one, and a slow client holds the dataflow back
/// instead of filling memory.
pub struct BridgeSink {
    endpoint: String,
    pattern: Pattern,
    timeout: Duration,
    pace: Option<f64>,
    sender: Option<SenderThread>,
}

struct SenderThread {
    queue: std::sync::mpsc::SyncSender<Event>,
    thread: std::thread::JoinHandle<Result<u64, BridgeError>>,
}

impl BridgeSink {
    /// A sink serving on `endpoint`; see [`Server::bind`].
    pub fn new(
        endpoint: &str,
        pattern: Pattern,
        timeout: Duration,
        pace: Option<f64>,
    ) -> BridgeSink {
        BridgeSink {
            endpoint: endpoint.to_string(),
            pattern,
            timeout,
            pace,
            sender: None,
        }
    }

    fn start(&mut self) -> Result<(), SinkError> {
        // Bind here, so that a taken port is reported as the run's error right away.
        let mut server = Server::bind(&self.endpoint, self.pattern, self.timeout, self.pace)
            .map_err(SinkError::format)?;
        let (queue, trains) = std::sync::mpsc::sync_channel::<Event>(1);
        let (endpoint, timeout) = (self.endpoint.clone(), self.timeout);
        let thread = std::thread::Builder::new()
            .name("shotflow:bridge".into())
            .spawn(move || {
                for event in trains {
                    let id = event.id;
                    match server.send(event) {
                        Ok(true) => {}
                        Ok(false) => {
                            return Err(BridgeError::NoClient {
                                endpoint,
                                train: id,
                                waited: timeout,
                                sent: server.sent,
                            })
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(server.sent)
            })
            .map_err(|e| SinkError::Other(format!("starting the bridge sender: {e}")))?;
        self.sender = Some(SenderThread { queue, thread });
        Ok(())
    }

    /// Ends the sender thread and returns its error, if any.
    fn stop(&mut self) -> Result<(), SinkError> {
        match self.sender.take() {
            Some(SenderThread { queue, thread }) => {
                drop(queue);
                match thread.join() {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(SinkError::format(e)),
                    Err(_) => Err(SinkError::Other("the bridge sender panicked".into())),
                }
            }
            None => Ok(()),
        }
    }
}

impl OrderedSink<Event> for BridgeSink {
    type Output = ();

    fn emit(&mut self, _: Batch, events: Vec<Event>, _: &mut Vec<()>) -> Result<(), SinkError> {
        if self.sender.is_none() {
            self.start()?;
        }
        for event in events {
            let queue = &self.sender.as_ref().expect("started").queue;
            if queue.send(event).is_err() {
                // The sender stopped: its error says why.
                return self
                    .stop()
                    .and(Err(SinkError::Other("the bridge sender stopped".into())));
            }
        }
        Ok(())
    }

    fn commit(&mut self, upto: Option<Batch>, _: &mut Vec<()>) -> Result<(), SinkError> {
        match upto {
            Some(_) => Ok(()),
            None => self.stop(),
        }
    }
}

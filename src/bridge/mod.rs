//! karabo-bridge: the ZeroMQ protocol that European XFEL's online tools speak (EXtra-foam,
//! karabo-bridge-py, OnDA). A [`client`] source turns each train message into an event; a
//! [`server`] sink sends events as trains to any karabo-bridge client, over REQ/REP (the
//! client asks with `next`) or PUSH/PULL.

pub mod client;
pub mod protocol;
pub mod server;

/// The ZeroMQ pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pattern {
    /// The client sends `next`, the server answers with one train.
    Rep,
    /// The server pushes trains; clients pull.
    Push,
}

/// Why the bridge failed.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A ZeroMQ call failed.
    #[error("{endpoint}: {source}")]
    Zmq {
        /// Endpoint.
        endpoint: String,
        /// Cause.
        source: zmq::Error,
    },
    /// No client asked for or took a train within the timeout (REP: nobody sent `next`; PUSH:
    /// nobody pulled).
    #[error("{endpoint}: no client took train {train} within {waited:?} ({sent} trains sent)")]
    NoClient {
        /// Endpoint.
        endpoint: String,
        /// The train that waited.
        train: u64,
        /// How long it waited.
        waited: std::time::Duration,
        /// Trains sent before it.
        sent: u64,
    },
    /// The peer sent something that is not karabo-bridge.
    #[error("{endpoint}: {source}")]
    Protocol {
        /// Endpoint.
        endpoint: String,
        /// Cause.
        source: protocol::ProtocolError,
    },
}

/// A ZeroMQ context with `io_threads` I/O threads: each TCP connection is served by one, so a
/// parallel client or a server with several clients needs more than ZeroMQ's default one.
pub(crate) fn context(endpoint: &str, io_threads: usize) -> Result<zmq::Context, BridgeError> {
    let context = zmq::Context::new();
    context
        .set_io_threads(io_threads.clamp(1, 8) as i32)
        .map_err(|e| BridgeError::Zmq {
            endpoint: endpoint.to_string(),
            source: e,
        })?;
    Ok(context)
}

/// A ZeroMQ socket of `kind` with every wait bounded by `timeout`, bound (`bind`) or connected
/// to `endpoint`.
pub(crate) fn socket(
    context: &zmq::Context,
    kind: zmq::SocketType,
    endpoint: &str,
    timeout: std::time::Duration,
    bind: bool,
) -> Result<zmq::Socket, BridgeError> {
    let zmq_err = |e| BridgeError::Zmq {
        endpoint: endpoint.to_string(),
        source: e,
    };
    let socket = context.socket(kind).map_err(zmq_err)?;
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    socket.set_rcvtimeo(ms).map_err(zmq_err)?;
    socket.set_sndtimeo(ms).map_err(zmq_err)?;
    // A server lingers to deliver its last train; a client has nothing to deliver.
    socket
        .set_linger(if bind { 1000 } else { 0 })
        .map_err(zmq_err)?;
    if bind {
        socket.bind(endpoint).map_err(zmq_err)?;
    } else {
        socket.connect(endpoint).map_err(zmq_err)?;
    }
    Ok(socket)
}

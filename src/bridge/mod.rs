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
    /// The peer sent something that is not karabo-bridge.
    #[error("{endpoint}: {source}")]
    Protocol {
        /// Endpoint.
        endpoint: String,
        /// Cause.
        source: protocol::ProtocolError,
    },
}

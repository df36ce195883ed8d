//! The transports' native cores (stream, datagram, pipe, TLS) and the accept loop, with what they share.

pub mod transport_core;
pub mod flow_control;
pub mod stream_transport;
pub mod datagram_transport;
pub mod pipe_transport;
pub mod tls_protocol;
pub mod accept;

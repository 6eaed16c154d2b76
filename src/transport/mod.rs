//! How bytes reach the application: the accept loop and its connection limits
//! ([`serve`]), TLS with certificates reloaded from disk ([`tls`]), per-request limits
//! ([`limits`]) and JSON shape bounds ([`json_shape`]) on the client port, and who may
//! speak on the peer port ([`peer`]).

pub mod json_shape;
pub mod limits;
pub mod peer;
pub mod serve;
pub mod setup;
pub mod tls;

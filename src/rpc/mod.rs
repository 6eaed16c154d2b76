//! JSON-RPC 2.0 on `POST /licenses`: envelope, method table, params, wire objects, the API
//! key methods (`keys`), the administration methods (`administration`, with paging
//! `cursor`s), the caller's own credential and the cluster (`console`, what the web
//! console needs beyond those), and the mapping of failures to wire codes (in `error`, and only there).

pub mod administration;
pub mod console;
pub mod cursor;
pub mod envelope;
pub mod error;
pub mod keys;
pub mod methods;
pub mod objects;
pub mod params;

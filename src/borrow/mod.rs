//! The pure domain core: licenses, host ids, dates, half-open intervals, the per-license
//! capacity index, the borrow checks of docs/protocol.md §5.2 in order, and the signed license document, the return token.
//! No async, no I/O, no clock reads: time and ids come in as data.

pub mod capacity;
pub mod check;
pub mod document;
pub mod host_id;
pub mod license;
pub mod pool;
pub mod return_token;
pub mod time;

//! Paging cursors: opaque to clients (base64url of a small text), checked when they come
//! back so that a mangled cursor is a clear `-32602`, not a wrong page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

use crate::borrow::host_id::HostId;
use crate::borrow::time::UnixSeconds;

use super::error::RpcError;

fn encode(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn decode(cursor: &str, prefix: &str) -> Result<String, RpcError> {
    let bad = || {
        RpcError::invalid_params(
            "cursor is not a cursor this method handed out: pass nextCursor as it was given",
        )
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(prefix)
        .map(str::to_string)
        .ok_or_else(bad)
}

/// `ListBorrowsV1`: after the borrow made at this instant with this id.
pub fn encode_borrow((at, id): (UnixSeconds, Uuid)) -> String {
    encode(&format!("b1:{at}:{id}"))
}

/// See [`encode_borrow`].
pub fn decode_borrow(cursor: &str) -> Result<(UnixSeconds, Uuid), RpcError> {
    let text = decode(cursor, "b1:")?;
    let bad = || RpcError::invalid_params("cursor is not a ListBorrowsV1 cursor");
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        Uuid::parse_str(id).map_err(|_| bad())?,
    ))
}

/// `ListAuditV1`: after this sequence number.
pub fn encode_seq(seq: u64) -> String {
    encode(&format!("a1:{seq}"))
}

/// See [`encode_seq`].
pub fn decode_seq(cursor: &str) -> Result<u64, RpcError> {
    decode(cursor, "a1:")?
        .parse()
        .map_err(|_| RpcError::invalid_params("cursor is not a ListAuditV1 cursor"))
}

/// `ListHostsV1`: after this host.
pub fn encode_host(host: &HostId) -> String {
    encode(&format!("h1:{host}"))
}

/// See [`encode_host`].
pub fn decode_host(cursor: &str) -> Result<HostId, RpcError> {
    HostId::parse(&decode(cursor, "h1:")?)
        .map_err(|_| RpcError::invalid_params("cursor is not a ListHostsV1 cursor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_not_interchangeable() {
        let id = Uuid::from_u128(7);
        assert_eq!(decode_borrow(&encode_borrow((42, id))).unwrap(), (42, id));
        assert_eq!(decode_seq(&encode_seq(9)).unwrap(), 9);
        let host = HostId::parse("MAC:2C549188C9E3").unwrap();
        assert_eq!(decode_host(&encode_host(&host)).unwrap(), host);
        assert!(decode_seq(&encode_borrow((42, id))).is_err());
        assert!(decode_borrow("not base64 !").is_err());
        assert!(decode_host(&encode_seq(1)).is_err());
    }
}

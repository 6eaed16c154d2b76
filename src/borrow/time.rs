//! The date grammar of the wire and the one output form (docs/protocol.md §4).
//!
//! Inside the domain an instant is `i64` Unix seconds: the wire only ever shows whole
//! seconds, and integers keep the capacity index and the state machine cheap and exact.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};

use super::host_id::truncate_for_message;

/// Unix seconds, UTC.
pub type UnixSeconds = i64;

/// What a parsed date stands for: a plain date means the start of the day as a
/// `validFrom` and the last second of the day as a `validUntil`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateRole {
    /// The start of an interval (`validFrom`): a plain date is 00:00:00Z.
    Start,
    /// The end of an interval (`validUntil`): a plain date is 23:59:59Z.
    End,
}

/// A date that does not follow the grammar (JSON-RPC code 35 for borrow params).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {given:?} is not a date: expected ISO-8601 like 2025-12-01T08:00:00Z, 2025-12-01T10:00:00+02:00 or 2025-12-01")]
pub struct DateError {
    /// The parameter the date came from (`validFrom`, `validUntil`).
    pub field: &'static str,
    /// The text that was given.
    pub given: String,
}

/// Parses an ISO-8601 date-time with `Z` or an offset (fractional seconds allowed and
/// dropped), or a plain `YYYY-MM-DD` date interpreted by `role`.
pub fn parse_instant(
    text: &str,
    role: DateRole,
    field: &'static str,
) -> Result<UnixSeconds, DateError> {
    let refuse = || DateError {
        field,
        given: truncate_for_message(text),
    };
    let text = text.trim();
    if text.len() > 64 {
        return Err(refuse());
    }
    if let Ok(moment) = DateTime::parse_from_rfc3339(text) {
        return Ok(moment.timestamp());
    }
    // RFC 3339 insists on a `T`; ISO-8601 also allows a lower-case `t` or a space, which
    // `parse_from_rfc3339` already accepts. Offsets without a colon (`+0200`) are ISO too.
    if let Ok(moment) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Ok(moment.timestamp());
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let time = match role {
            DateRole::Start => NaiveTime::MIN,
            DateRole::End => NaiveTime::from_hms_opt(23, 59, 59).ok_or_else(refuse)?,
        };
        return Ok(NaiveDateTime::new(date, time).and_utc().timestamp());
    }
    Err(refuse())
}

/// Formats an instant as RFC 3339 UTC with `Z` and whole seconds: the only output form.
pub fn format_instant(instant: UnixSeconds) -> String {
    match DateTime::<Utc>::from_timestamp(instant, 0) {
        Some(moment) => moment.to_rfc3339_opts(SecondsFormat::Secs, true),
        // Unreachable for instants that came through `parse_instant`; keep output total.
        None => instant.to_string(),
    }
}

/// Reads the wall clock as an [`UnixSeconds`]. Only the edges call this: the domain gets time as data.
pub fn now() -> UnixSeconds {
    Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, role: DateRole) -> UnixSeconds {
        parse_instant(text, role, "validFrom").unwrap()
    }

    #[test]
    fn accepts_every_documented_form() {
        let base = parse("2025-12-01T08:00:00Z", DateRole::Start);
        assert_eq!(format_instant(base), "2025-12-01T08:00:00Z");
        assert_eq!(parse("2025-12-01T10:00:00+02:00", DateRole::Start), base);
        assert_eq!(parse("2025-12-01T10:00:00+0200", DateRole::Start), base);
        assert_eq!(parse("2025-12-01T08:00:00.750Z", DateRole::Start), base);
        assert_eq!(
            parse("2025-12-01T08:00:00.123456789+00:00", DateRole::Start),
            base
        );
        assert_eq!(
            format_instant(parse("2025-12-01", DateRole::Start)),
            "2025-12-01T00:00:00Z"
        );
        assert_eq!(
            format_instant(parse("2025-12-01", DateRole::End)),
            "2025-12-01T23:59:59Z"
        );
    }

    #[test]
    fn refuses_what_is_not_a_date() {
        for bad in [
            "",
            "tomorrow",
            "2025-13-01",
            "2025-12-32T00:00:00Z",
            "2025-12-01T08:00:00",
            "2025-12-01T25:00:00Z",
            "12/01/2025",
        ] {
            assert!(
                parse_instant(bad, DateRole::Start, "validFrom").is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_names_the_field() {
        let err = parse_instant("nope", DateRole::End, "validUntil").unwrap_err();
        assert!(err.to_string().starts_with("validUntil \"nope\""));
    }
}

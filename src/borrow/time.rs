//! The date grammar of the wire and the one output form (docs/protocol.md §4).
//!
//! Inside the domain an instant is `i64` Unix seconds: the wire only ever shows whole
//! seconds, and integers keep the capacity index and the state machine cheap and exact.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};

use super::check::LATEST_INSTANT;
use super::host_id::truncate_for_message;

/// Unix seconds, UTC.
pub type UnixSeconds = i64;

/// 0000-01-01T00:00:00Z. With [`LATEST_INSTANT`], the instants the one output form can
/// write: RFC 3339 has four-digit years. A date outside is refused on input, so every
/// date the server accepts it can also write back.
pub const EARLIEST_INSTANT: UnixSeconds = -62_167_219_200;

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
/// dropped), or a plain `YYYY-MM-DD` date interpreted by `role`. Instants outside
/// [`EARLIEST_INSTANT`]..=[`LATEST_INSTANT`] (years before 0000 or after 9999 in UTC,
/// which the parser would take with a sign) are refused.
pub fn parse_instant(
    text: &str,
    role: DateRole,
    field: &'static str,
) -> Result<UnixSeconds, DateError> {
    let refuse = || DateError {
        field,
        given: truncate_for_message(text),
    };
    let trimmed = text.trim();
    if trimmed.len() > 64 {
        return Err(refuse());
    }
    match parse_forms(trimmed, role) {
        Some(instant) if (EARLIEST_INSTANT..=LATEST_INSTANT).contains(&instant) => Ok(instant),
        _ => Err(refuse()),
    }
}

/// The instant `text` names in any accepted form, before the range check.
fn parse_forms(text: &str, role: DateRole) -> Option<UnixSeconds> {
    if let Ok(moment) = DateTime::parse_from_rfc3339(text) {
        return Some(moment.timestamp());
    }
    // RFC 3339 insists on a `T`; ISO-8601 also allows a lower-case `t` or a space, which
    // `parse_from_rfc3339` already accepts. Offsets without a colon (`+0200`) are ISO too.
    if let Ok(moment) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(moment.timestamp());
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let time = match role {
        DateRole::Start => NaiveTime::MIN,
        DateRole::End => NaiveTime::from_hms_opt(23, 59, 59)?,
    };
    Some(NaiveDateTime::new(date, time).and_utc().timestamp())
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

    /// Found by the `dates_and_host_ids` fuzz target: a signed or five-digit year parsed,
    /// and the server then wrote it as `-2025-12-01T00:00:00Z`, which is no RFC 3339 date
    /// and does not parse back.
    #[test]
    fn refuses_years_the_output_form_cannot_write() {
        for bad in [
            "-2025-12-01",
            "+12025-12-01",
            "-0001-12-31T23:59:59Z",
            "+10000-01-01T00:00:00+0000",
            "0000-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
        ] {
            for role in [DateRole::Start, DateRole::End] {
                assert!(parse_instant(bad, role, "validFrom").is_err(), "{bad:?}");
            }
        }
        // The edges themselves are dates, and written back as they were given.
        let parse = |text, role| parse_instant(text, role, "validFrom");
        assert_eq!(
            parse("0000-01-01T00:00:00Z", DateRole::Start),
            Ok(EARLIEST_INSTANT)
        );
        assert_eq!(parse("0000-01-01", DateRole::Start), Ok(EARLIEST_INSTANT));
        assert_eq!(
            parse("9999-12-31T23:59:59Z", DateRole::End),
            Ok(LATEST_INSTANT)
        );
        assert_eq!(parse("9999-12-31", DateRole::End), Ok(LATEST_INSTANT));
        assert_eq!(format_instant(EARLIEST_INSTANT), "0000-01-01T00:00:00Z");
        assert_eq!(format_instant(LATEST_INSTANT), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn error_names_the_field() {
        let err = parse_instant("nope", DateRole::End, "validUntil").unwrap_err();
        assert!(err.to_string().starts_with("validUntil \"nope\""));
    }
}

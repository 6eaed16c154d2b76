//! Durations as people type them on the command line: `10s`, `500ms`, `2m`, `1.5h`.

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was given.
    #[error("empty duration: expected a number with a unit, like 10s, 500ms, 2m or 1h")]
    Empty,
    /// The number part is missing or not a non-negative decimal.
    #[error("{0:?} is not a duration: expected a number with a unit, like 10s, 500ms, 2m or 1h")]
    BadNumber(String),
    /// The unit is missing or unknown.
    #[error("{0:?} has no known unit: use ms, s, m or h (e.g. 10s)")]
    BadUnit(String),
    /// The value does not fit a `Duration`.
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// Parses `<number><unit>` where the number may have a fraction and the unit is `ms`, `s`,
/// `m` or `h`. A bare `0` is accepted since its unit does not matter; any other number
/// needs a unit, so `10` is never silently read as seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError::BadUnit(text.to_string()))?;
    let (number, unit) = text.split_at(split);
    // `f64::from_str` would also take "inf", "1e3" and signs; the digit scan above keeps
    // the number to plain decimals, and this check refuses "", "." and "1.2.3".
    let valid_number = !number.is_empty()
        && number.matches('.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    if !valid_number {
        return Err(DurationError::BadNumber(text.to_string()));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::BadNumber(text.to_string()))?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(DurationError::BadUnit(text.to_string())),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| DurationError::TooLong(text.to_string()))
}

/// Formats a duration in the unit that reads best: `500ms`, `10s`, `1.5s`, `2m`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1000.0;
    if duration.is_zero() {
        "0s".to_string()
    } else if millis < 1000.0 {
        format!("{}ms", trim_number(millis))
    } else if duration.as_secs() % 60 == 0 && duration.subsec_nanos() == 0 {
        format!("{}m", duration.as_secs() / 60)
    } else {
        format!("{}s", trim_number(duration.as_secs_f64()))
    }
}

/// Up to three decimals, without trailing zeros.
fn trim_number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units_are_read() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 250ms "), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_are_refused() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::BadUnit(_))
        ));
        assert!(matches!(
            parse_duration("10x"),
            Err(DurationError::BadUnit(_))
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration(".s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("infs"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn durations_are_formatted_in_a_readable_unit() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        for text in ["500ms", "10s", "1.5s", "2m"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(format_duration(parsed), text);
        }
    }
}

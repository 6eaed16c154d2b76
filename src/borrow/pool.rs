//! The license pool file: the licenses a new cluster starts with.
//!
//! Either a JSON array of licenses in the Borrow API's `LicenseInfo` shape (docs/protocol.md §3.5) (without
//! `borrowedIntervals`), or an object `{"maxBorrowDuration": "30d", "licenses": [...]}`
//! that also sets the pool-wide maximum borrow length. A license may set its own
//! `maxBorrowDuration`. Unknown fields are refused so that a typo does not silently
//! change what is handed out.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::license::{License, LicenseKey, DEFAULT_MAX_BORROW_SECS};
use super::time::{parse_instant, DateRole};

/// A validated pool: its licenses and the pool-wide default borrow limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Licenses, unique by feature and uuid.
    pub licenses: Vec<License>,
    /// Longest borrow for licenses that do not set their own.
    pub max_borrow_secs: i64,
}

/// What is wrong with a pool file, with the entry and field it concerns.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Not JSON, or not the expected shape.
    #[error("pool file is not valid: {0}")]
    Syntax(String),
    /// One entry breaks a rule.
    #[error("licenses[{index}] ({feature}/{uuid}): {problem}")]
    Entry {
        /// Position in the `licenses` array.
        index: usize,
        /// Feature as written in the entry.
        feature: String,
        /// Uuid as written in the entry.
        uuid: String,
        /// Field and problem.
        problem: String,
    },
    /// The pool-wide setting is malformed.
    #[error("maxBorrowDuration: {0}")]
    MaxBorrowDuration(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PoolFile {
    Bare(Vec<LicenseEntry>),
    WithSettings(PoolWithSettings),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PoolWithSettings {
    max_borrow_duration: Option<String>,
    licenses: Vec<LicenseEntry>,
}

/// One license as written in a pool file: the `LicenseInfo` fields (docs/protocol.md §3.5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LicenseEntry {
    /// See [`License`].
    pub feature: String,
    /// See [`License`].
    pub uuid: String,
    /// See [`License`].
    pub version: String,
    /// See [`License`].
    pub edition: String,
    /// See [`License`].
    pub modules: String,
    /// See [`License`]; negative counts are refused by the type.
    pub count: u32,
    /// ISO-8601 date or date-time.
    pub valid_from: Option<String>,
    /// ISO-8601 date or date-time; a plain date means the end of that day.
    pub valid_until: Option<String>,
    /// e.g. `30d`, `12h`, `90m`, `3600s`.
    pub max_borrow_duration: Option<String>,
}

impl LicenseEntry {
    /// Turns the written form into a validated [`License`].
    pub fn into_license(self) -> Result<License, String> {
        let valid_from = self
            .valid_from
            .as_deref()
            .map(|text| parse_instant(text, DateRole::Start, "validFrom"))
            .transpose()
            .map_err(|e| e.to_string())?;
        let valid_until = self
            .valid_until
            .as_deref()
            .map(|text| parse_instant(text, DateRole::End, "validUntil"))
            .transpose()
            .map_err(|e| e.to_string())?;
        let max_borrow_secs = self
            .max_borrow_duration
            .as_deref()
            .map(parse_duration_secs)
            .transpose()
            .map_err(|e| format!("maxBorrowDuration: {e}"))?;
        let license = License {
            key: LicenseKey {
                feature: self.feature,
                uuid: self.uuid,
            },
            version: self.version,
            edition: self.edition,
            modules: self.modules,
            count: self.count,
            valid_from,
            valid_until,
            max_borrow_secs,
        };
        license.validate().map_err(|e| e.to_string())?;
        Ok(license)
    }
}

/// Parses and validates a pool file's text.
pub fn parse_pool(text: &str) -> Result<Pool, PoolError> {
    let file: PoolFile = serde_json::from_str(text).map_err(|e| {
        PoolError::Syntax(format!(
            "{e} (expected an array of licenses or {{\"licenses\": [...]}})"
        ))
    })?;
    let (entries, max_borrow) = match file {
        PoolFile::Bare(entries) => (entries, None),
        PoolFile::WithSettings(pool) => (pool.licenses, pool.max_borrow_duration),
    };
    let max_borrow_secs = match max_borrow {
        Some(text) => parse_duration_secs(&text).map_err(PoolError::MaxBorrowDuration)?,
        None => DEFAULT_MAX_BORROW_SECS,
    };
    let mut seen = BTreeSet::new();
    let mut licenses = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let (feature, uuid) = (entry.feature.clone(), entry.uuid.clone());
        let entry_error = |problem: String| PoolError::Entry {
            index,
            feature: feature.clone(),
            uuid: uuid.clone(),
            problem,
        };
        let license = entry.into_license().map_err(entry_error)?;
        if !seen.insert(license.key.clone()) {
            return Err(entry_error(
                "duplicate: another entry has the same feature and uuid".to_string(),
            ));
        }
        licenses.push(license);
    }
    Ok(Pool {
        licenses,
        max_borrow_secs,
    })
}

/// Parses `30d`, `12h`, `90m`, `3600s` or a bare number of seconds.
pub fn parse_duration_secs(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c),
        _ => (text, 's'),
    };
    let multiplier = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(format!("{text:?}: unknown unit {unit:?}, use d, h, m or s")),
    };
    let amount: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30d, 12h, 90m or 3600s"))?;
    match amount.checked_mul(multiplier) {
        Some(secs) if secs > 0 => Ok(secs),
        _ => Err(format!("{text:?} must be a positive duration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_ENTRY: &str = r#"{"feature":"MVTec_HDevelop","uuid":"118cf2e7b3d20001","version":"26.05","edition":"Progress","modules":"fc123bdomit","validUntil":"2026-12-31T23:59:59Z","count":1}"#;

    #[test]
    fn reads_a_bare_array_with_the_default_limit() {
        let pool = parse_pool(&format!("[{SEED_ENTRY}]")).unwrap();
        assert_eq!(pool.licenses.len(), 1);
        assert_eq!(pool.max_borrow_secs, DEFAULT_MAX_BORROW_SECS);
        assert_eq!(pool.licenses[0].count, 1);
    }

    #[test]
    fn reads_pool_settings() {
        let text = format!(r#"{{"maxBorrowDuration":"7d","licenses":[{SEED_ENTRY}]}}"#);
        assert_eq!(parse_pool(&text).unwrap().max_borrow_secs, 7 * 86_400);
    }

    #[test]
    fn names_the_entry_and_field_at_fault() {
        let bad = SEED_ENTRY.replace("fc123bdomit", "xyz");
        let err = parse_pool(&format!("[{SEED_ENTRY},{bad}]")).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("licenses[1]"), "{text}");
        assert!(text.contains("modules"), "{text}");
    }

    #[test]
    fn refuses_duplicates_unknown_fields_and_negative_counts() {
        assert!(parse_pool(&format!("[{SEED_ENTRY},{SEED_ENTRY}]"))
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
        let typo = SEED_ENTRY.replace("\"count\"", "\"cuont\"");
        assert!(parse_pool(&format!("[{typo}]")).is_err());
        let negative = SEED_ENTRY.replace("\"count\":1", "\"count\":-1");
        assert!(parse_pool(&format!("[{negative}]")).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration_secs("12h"), Ok(43_200));
        assert_eq!(parse_duration_secs("90m"), Ok(5_400));
        assert_eq!(parse_duration_secs("3600"), Ok(3_600));
        assert!(parse_duration_secs("0d").is_err());
        assert!(parse_duration_secs("5y").is_err());
        assert!(parse_duration_secs("d").is_err());
    }
}

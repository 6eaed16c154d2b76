//! The license pool file: the licenses a new cluster starts with.
//!
//! Either a JSON array of licenses in the Borrow API's `LicenseInfo` shape (docs/protocol.md §3.5) (without
//! `borrowedIntervals`), or an object `{"maxBorrowDuration": "30d", "licenses": [...]}`
//! that also sets pool-wide settings: the maximum borrow length, and how long and how much
//! of the audit trail is kept (`auditRetention`, `maxAuditEntries`). A license may set its
//! own `maxBorrowDuration`, and its borrow policy (`maxBorrowed`, `maxPerHost`). Unknown
//! fields are refused so that a typo does not silently change what is handed out.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::license::{License, LicenseKey, DEFAULT_MAX_BORROW_SECS};
use super::time::{format_instant, parse_instant, DateRole};

/// How long audit entries are kept when the pool file does not say (`auditRetention`).
pub const DEFAULT_AUDIT_RETENTION_SECS: i64 = 90 * 86_400;
/// Most audit entries kept when the pool file does not say (`maxAuditEntries`): every
/// replica holds the trail in memory and in every snapshot.
pub const DEFAULT_MAX_AUDIT_ENTRIES: u64 = 100_000;
/// Largest `maxAuditEntries` accepted.
pub const MAX_AUDIT_ENTRIES_LIMIT: u64 = 10_000_000;

/// A validated pool: its licenses and the pool-wide settings. Also what a pool change
/// carries through the log, so it is serialisable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// Licenses, unique by feature and uuid.
    pub licenses: Vec<License>,
    /// Longest borrow for licenses that do not set their own.
    pub max_borrow_secs: i64,
    /// How long audit entries are kept.
    pub audit_retention_secs: i64,
    /// Most audit entries kept (the oldest go first).
    pub max_audit_entries: u64,
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
    /// A pool-wide setting is malformed.
    #[error("{field}: {problem}")]
    Setting {
        /// The setting's name in the file.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
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
    audit_retention: Option<String>,
    max_audit_entries: Option<u64>,
    licenses: Vec<LicenseEntry>,
}

/// One license as written in a pool file: the `LicenseInfo` fields (docs/protocol.md §3.5)
/// and the borrow policy. Also how the administration methods show a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    /// ISO-8601 date or date-time; a plain date means the end of that day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// e.g. `30d`, `12h`, `90m`, `3600s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_borrow_duration: Option<String>,
    /// See [`License::max_borrowed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_borrowed: Option<u32>,
    /// See [`License::max_per_host`]; at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_host: Option<u32>,
}

impl From<&License> for LicenseEntry {
    /// The written form: dates in RFC 3339, durations as in a pool file (`14d`).
    fn from(license: &License) -> LicenseEntry {
        LicenseEntry {
            feature: license.key.feature.clone(),
            uuid: license.key.uuid.clone(),
            version: license.version.clone(),
            edition: license.edition.clone(),
            modules: license.modules.clone(),
            count: license.count,
            valid_from: license.valid_from.map(format_instant),
            valid_until: license.valid_until.map(format_instant),
            max_borrow_duration: license.max_borrow_secs.map(format_duration),
            max_borrowed: license.max_borrowed,
            max_per_host: license.max_per_host,
        }
    }
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
            max_borrowed: self.max_borrowed,
            max_per_host: self.max_per_host,
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
    let settings = match file {
        PoolFile::Bare(licenses) => PoolWithSettings {
            max_borrow_duration: None,
            audit_retention: None,
            max_audit_entries: None,
            licenses,
        },
        PoolFile::WithSettings(pool) => pool,
    };
    let duration = |field: &'static str, text: Option<String>, default: i64| match text {
        Some(text) => {
            parse_duration_secs(&text).map_err(|problem| PoolError::Setting { field, problem })
        }
        None => Ok(default),
    };
    let max_borrow_secs = duration(
        "maxBorrowDuration",
        settings.max_borrow_duration,
        DEFAULT_MAX_BORROW_SECS,
    )?;
    let audit_retention_secs = duration(
        "auditRetention",
        settings.audit_retention,
        DEFAULT_AUDIT_RETENTION_SECS,
    )?;
    let max_audit_entries = settings
        .max_audit_entries
        .unwrap_or(DEFAULT_MAX_AUDIT_ENTRIES);
    if !(1..=MAX_AUDIT_ENTRIES_LIMIT).contains(&max_audit_entries) {
        return Err(PoolError::Setting {
            field: "maxAuditEntries",
            problem: format!("{max_audit_entries} is not between 1 and {MAX_AUDIT_ENTRIES_LIMIT}"),
        });
    }
    let entries = settings.licenses;
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
        audit_retention_secs,
        max_audit_entries,
    })
}

/// Parses and validates a pool given as JSON (a method's parameter).
pub fn pool_from_json(value: &serde_json::Value) -> Result<Pool, PoolError> {
    parse_pool(&value.to_string())
}

/// Writes a duration as a pool file does, in the largest unit that divides it: `14d`,
/// `36h`, `90m`, `45s`.
pub fn format_duration(secs: i64) -> String {
    match secs {
        s if s != 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s != 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s != 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
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
    fn reads_policies_and_audit_settings_and_writes_licenses_back() {
        let entry = SEED_ENTRY.replace(
            "\"count\":1",
            "\"count\":4,\"maxBorrowed\":2,\"maxPerHost\":1",
        );
        let text =
            format!(r#"{{"auditRetention":"7d","maxAuditEntries":500,"licenses":[{entry}]}}"#);
        let pool = parse_pool(&text).unwrap();
        assert_eq!(pool.audit_retention_secs, 7 * 86_400);
        assert_eq!(pool.max_audit_entries, 500);
        let license = &pool.licenses[0];
        assert_eq!(
            (license.max_borrowed, license.max_per_host),
            (Some(2), Some(1))
        );
        assert_eq!(license.borrowable_seats(), 2);
        // The written form reads back as the same license.
        let written = LicenseEntry::from(license);
        let again = serde_json::from_value::<LicenseEntry>(serde_json::to_value(&written).unwrap())
            .unwrap()
            .into_license()
            .unwrap();
        assert_eq!(&again, license);
        let zero = SEED_ENTRY.replace("\"count\":1", "\"count\":1,\"maxPerHost\":0");
        assert!(parse_pool(&format!("[{zero}]"))
            .unwrap_err()
            .to_string()
            .contains("maxPerHost"));
        let huge = format!(r#"{{"maxAuditEntries":0,"licenses":[{SEED_ENTRY}]}}"#);
        assert!(parse_pool(&huge)
            .unwrap_err()
            .to_string()
            .contains("maxAuditEntries"));
    }

    #[test]
    fn durations_are_written_in_the_largest_unit_and_read_back() {
        for (secs, text) in [
            (14 * 86_400, "14d"),
            (36 * 3_600, "36h"),
            (5_400, "90m"),
            (45, "45s"),
        ] {
            assert_eq!(format_duration(secs), text);
            assert_eq!(parse_duration_secs(text), Ok(secs));
        }
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

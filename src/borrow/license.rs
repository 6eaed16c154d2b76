//! A license of the pool: what can be borrowed, how many at once, and for how long.

use serde::{Deserialize, Serialize};

use super::time::UnixSeconds;

/// The features the Borrow API knows (seed: `LicenseInfo.feature`).
pub const FEATURES: [&str; 2] = ["MVTec_HDevelop", "MVTec_HALCON"];
/// The editions the Borrow API knows (seed: `LicenseInfo.edition`).
pub const EDITIONS: [&str; 3] = ["Progress", "Steady", "Steady-Progress"];
/// The module letters in their only allowed order (seed: `^f?c?1?2?3?b?d?o?m?i?t?$`).
pub const MODULE_ORDER: &str = "fc123bdomit";
/// Maximum borrow length when neither the license nor the pool sets one (docs/protocol.md §5.3).
pub const DEFAULT_MAX_BORROW_SECS: i64 = 30 * 24 * 3600;

/// Identifies a license: a uuid is unique only together with its feature.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LicenseKey {
    /// `MVTec_HDevelop` or `MVTec_HALCON`.
    pub feature: String,
    /// The license's id within its feature.
    pub uuid: String,
}

/// One license of the pool, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    /// Feature and uuid.
    pub key: LicenseKey,
    /// Product version the license is for (free text, e.g. `26.05`).
    pub version: String,
    /// One of [`EDITIONS`].
    pub edition: String,
    /// Module letters, a subsequence of [`MODULE_ORDER`].
    pub modules: String,
    /// How many borrows may overlap at any instant.
    pub count: u32,
    /// Start of the license's own validity; `None` is the beginning of time.
    pub valid_from: Option<UnixSeconds>,
    /// End of the license's own validity (inclusive last second); `None` never expires.
    pub valid_until: Option<UnixSeconds>,
    /// Longest borrow this license allows; `None` falls back to the pool's setting.
    pub max_borrow_secs: Option<i64>,
    /// Most borrows that may overlap at any instant when fewer than `count` may be out on
    /// borrow (FlexNet's BORROW_LOWWATER, RLM's ROAM_MAX_COUNT); `None`: `count`.
    pub max_borrowed: Option<u32>,
    /// Most current and upcoming borrows of this license one host may hold; `None`: no
    /// limit of the license's own (the server-wide safety limit stays).
    pub max_per_host: Option<u32>,
}

/// A field of a license that does not follow the rules of docs/protocol.md §3.5.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct LicenseFieldError {
    /// The offending field, by its wire name.
    pub field: &'static str,
    /// What is wrong with it, for a person.
    pub problem: String,
}

impl License {
    /// How many borrows may overlap at any instant: `count`, or `max_borrowed` when lower.
    pub fn borrowable_seats(&self) -> u32 {
        self.max_borrowed
            .map_or(self.count, |cap| cap.min(self.count))
    }

    /// Checks every field against docs/protocol.md §3.5; the first problem wins.
    pub fn validate(&self) -> Result<(), LicenseFieldError> {
        let fail = |field: &'static str, problem: String| Err(LicenseFieldError { field, problem });
        if !FEATURES.contains(&self.key.feature.as_str()) {
            return fail(
                "feature",
                format!(
                    "{:?} is not one of {}",
                    self.key.feature,
                    FEATURES.join(", ")
                ),
            );
        }
        if !is_identifier(&self.key.uuid) {
            return fail(
                "uuid",
                format!(
                    "{:?} must be 1 to 128 printable characters without spaces",
                    self.key.uuid
                ),
            );
        }
        if !is_identifier(&self.version) {
            return fail(
                "version",
                format!(
                    "{:?} must be 1 to 128 printable characters without spaces",
                    self.version
                ),
            );
        }
        if !EDITIONS.contains(&self.edition.as_str()) {
            return fail(
                "edition",
                format!("{:?} is not one of {}", self.edition, EDITIONS.join(", ")),
            );
        }
        if !modules_match_pattern(&self.modules) {
            return fail(
                "modules",
                format!("{:?} does not match ^f?c?1?2?3?b?d?o?m?i?t?$", self.modules),
            );
        }
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until) {
            if until <= from {
                return fail("validUntil", "must be later than validFrom".to_string());
            }
        }
        if let Some(max) = self.max_borrow_secs {
            if max <= 0 {
                return fail("maxBorrowDuration", "must be positive".to_string());
            }
        }
        if self.max_per_host == Some(0) {
            return fail(
                "maxPerHost",
                "must be at least 1 (leave it out for no limit)".to_string(),
            );
        }
        Ok(())
    }
}

/// `modules` must be a subsequence of `fc123bdomit` in that order, each letter at most once.
pub fn modules_match_pattern(modules: &str) -> bool {
    let mut allowed = MODULE_ORDER.chars();
    modules.chars().all(|letter| allowed.any(|a| a == letter))
}

fn is_identifier(text: &str) -> bool {
    (1..=128).contains(&text.len()) && text.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> License {
        License {
            key: LicenseKey {
                feature: "MVTec_HDevelop".into(),
                uuid: "118cf2e7b3d20001".into(),
            },
            version: "26.05".into(),
            edition: "Progress".into(),
            modules: "fc123bdomit".into(),
            count: 1,
            valid_from: None,
            valid_until: Some(1_798_761_599),
            max_borrow_secs: None,
            max_borrowed: None,
            max_per_host: None,
        }
    }

    #[test]
    fn the_seed_example_is_valid() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn modules_follow_the_seed_pattern() {
        for good in ["", "f", "fc123bdomit", "c3t", "bdomit", "1"] {
            assert!(modules_match_pattern(good), "{good:?}");
        }
        for bad in ["cf", "ff", "x", "fc123bdomitt", "F", "tf"] {
            assert!(!modules_match_pattern(bad), "{bad:?}");
        }
    }

    #[test]
    fn each_field_is_checked_and_named() {
        let mut bad = sample();
        bad.key.feature = "Other".into();
        assert_eq!(bad.validate().unwrap_err().field, "feature");
        let mut bad = sample();
        bad.edition = "Gold".into();
        assert_eq!(bad.validate().unwrap_err().field, "edition");
        let mut bad = sample();
        bad.modules = "zz".into();
        assert_eq!(bad.validate().unwrap_err().field, "modules");
        let mut bad = sample();
        bad.key.uuid = String::new();
        assert_eq!(bad.validate().unwrap_err().field, "uuid");
        let mut bad = sample();
        bad.valid_from = Some(2_000_000_000);
        assert_eq!(bad.validate().unwrap_err().field, "validUntil");
    }
}

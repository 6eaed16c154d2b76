//! Which licenses and intervals the borrow load aims at.
//!
//! Borrows are meant to succeed unless a conflict is asked for, so:
//! - **Regular borrows** go to the candidate licenses with the largest count (the bench
//!   pool has one license of count 100 000 000), each for a random interval of one hour
//!   to seven days inside the bench window 2027-01-01 to 2031-01-01, clipped to the
//!   license's own validity. Seven days stays below any sensible maximum borrow length
//!   (30 days by default), and random placement over years keeps overlaps rare.
//! - **Contended borrows** (`--conflict-rate`) all go to the candidate with the smallest
//!   count, for one fixed day at the start of its window. The first `count` of them take
//!   the day's places and are never returned, so every later one is refused with error
//!   32 (not available). This needs a small-count license among the candidates (the
//!   sample pool has several); with only large counts, contended borrows still succeed,
//!   and the report says so.
//!
//! Candidates are the licenses given with `--license FEATURE/UUID`, or every license the
//! server lists.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use licensed::borrow::time::{format_instant, parse_instant, DateRole, UnixSeconds};
use licensed::client::LicenseInfo;

/// Start of the bench window: 2027-01-01T00:00:00Z.
pub const WINDOW_START: UnixSeconds = 1_798_761_600;
/// End of the bench window: 2031-01-01T00:00:00Z.
pub const WINDOW_END: UnixSeconds = 1_924_992_000;
/// Shortest regular borrow.
const MIN_BORROW_SECS: i64 = 3600;
/// Longest regular borrow.
pub const MAX_BORROW_SECS: i64 = 7 * 86_400;
/// Length of the contended interval.
const CONTENDED_SECS: i64 = 86_400;
/// From this count on, contended borrows are unlikely to run out of places in a run.
const LARGE_COUNT: u64 = 100_000;

/// A license named on the command line as `FEATURE/UUID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseRef {
    /// The feature, e.g. `MVTec_HALCON`.
    pub feature: String,
    /// The uuid, unique together with the feature.
    pub uuid: String,
}

impl FromStr for LicenseRef {
    type Err = String;

    fn from_str(text: &str) -> Result<LicenseRef, String> {
        match text.trim().split_once('/') {
            Some((feature, uuid)) if !feature.is_empty() && !uuid.is_empty() => Ok(LicenseRef {
                feature: feature.to_string(),
                uuid: uuid.to_string(),
            }),
            _ => Err(format!(
                "{text:?} is not FEATURE/UUID, e.g. MVTec_HALCON/bench"
            )),
        }
    }
}

impl fmt::Display for LicenseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.feature, self.uuid)
    }
}

/// A license the load borrows, with the part of the bench window it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLicense {
    /// Feature and uuid.
    pub id: LicenseRef,
    /// How many borrows may overlap.
    pub count: u64,
    /// First instant a borrow may start.
    pub from: UnixSeconds,
    /// UnixSeconds every borrow must end by.
    pub until: UnixSeconds,
}

impl TargetLicense {
    /// A random interval of one hour to seven days inside the license's window.
    pub fn random_interval<R: Rng + ?Sized>(&self, rng: &mut R) -> (UnixSeconds, UnixSeconds) {
        let length = rng.gen_range(MIN_BORROW_SECS..=MAX_BORROW_SECS);
        let start = rng.gen_range(self.from..=self.until - length);
        (start, start + length)
    }

    /// The one interval all contended borrows ask for.
    pub fn contended_interval(&self) -> (UnixSeconds, UnixSeconds) {
        (self.from, self.from + CONTENDED_SECS)
    }
}

/// The licenses a run borrows. Made only by [`LicensePlan::choose`], so there is always
/// at least one regular license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicensePlan {
    regular: Vec<TargetLicense>,
    contended: TargetLicense,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The server lists no license at all.
    #[error("the server lists no licenses")]
    EmptyPool,
    /// A license given on the command line is not in the pool.
    #[error("license {0} is not in the server's pool")]
    Unknown(String),
    /// A license given on the command line cannot take borrows in the bench window.
    #[error("license {license} cannot be borrowed for a week between 2027 and 2030: {reason}")]
    Unusable {
        /// The license.
        license: String,
        /// Why not.
        reason: String,
    },
    /// No listed license can take borrows in the bench window.
    #[error("no license in the pool can be borrowed for a week between 2027 and 2030 (count 0, or validity outside the window)")]
    NothingUsable,
}

impl LicensePlan {
    /// Chooses the licenses among `listed` (the server's pool): those in `requested`, or
    /// all of them when none are requested.
    pub fn choose(
        listed: &[LicenseInfo],
        requested: &[LicenseRef],
    ) -> Result<LicensePlan, PlanError> {
        if listed.is_empty() {
            return Err(PlanError::EmptyPool);
        }
        let mut candidates = Vec::new();
        if requested.is_empty() {
            candidates.extend(listed.iter().filter_map(|info| usable(info).ok()));
        } else {
            for wanted in requested {
                let info = listed
                    .iter()
                    .find(|info| info.feature == wanted.feature && info.uuid == wanted.uuid)
                    .ok_or_else(|| PlanError::Unknown(wanted.to_string()))?;
                let license = usable(info).map_err(|reason| PlanError::Unusable {
                    license: wanted.to_string(),
                    reason,
                })?;
                if !candidates.contains(&license) {
                    candidates.push(license);
                }
            }
        }
        let largest = candidates
            .iter()
            .map(|l| l.count)
            .max()
            .ok_or(PlanError::NothingUsable)?;
        let contended = candidates
            .iter()
            .min_by_key(|l| l.count)
            .cloned()
            .ok_or(PlanError::NothingUsable)?;
        let regular = candidates
            .into_iter()
            .filter(|l| l.count == largest)
            .collect();
        Ok(LicensePlan { regular, contended })
    }

    /// Targets of regular borrows: the candidates with the largest count; never empty.
    pub fn regular(&self) -> &[TargetLicense] {
        &self.regular
    }

    /// Target of contended borrows: the candidate with the smallest count.
    pub fn contended(&self) -> &TargetLicense {
        &self.contended
    }

    /// Picks the target of a regular borrow.
    pub fn pick_regular<R: Rng + ?Sized>(&self, rng: &mut R) -> &TargetLicense {
        &self.regular[rng.gen_range(0..self.regular.len())]
    }

    /// Lines for the report: what is borrowed, and whether conflicts can happen.
    pub fn describe(&self, conflict_rate: f64) -> Vec<String> {
        let names: Vec<String> = self
            .regular
            .iter()
            .map(|l| format!("{} (count {})", l.id, l.count))
            .collect();
        let mut notes = vec![format!("borrows go to {}", names.join(", "))];
        if conflict_rate > 0.0 {
            let (from, until) = self.contended.contended_interval();
            notes.push(format!(
                "{:.1} % of borrows contend for {} (count {}) from {} to {}",
                conflict_rate * 100.0,
                self.contended.id,
                self.contended.count,
                format_instant(from),
                format_instant(until),
            ));
            if self.contended.count >= LARGE_COUNT {
                notes.push(format!(
                    "the smallest count among the licenses is {}: contended borrows will rarely be refused; add a small-count license to the pool or pass one with --license",
                    self.contended.count
                ));
            }
        }
        notes
    }
}

/// The license's window inside the bench window, if a longest borrow fits in it.
fn usable(info: &LicenseInfo) -> Result<TargetLicense, String> {
    if info.count == 0 {
        return Err("its count is 0".into());
    }
    let from = match &info.valid_from {
        Some(text) => {
            parse_instant(text, DateRole::Start, "validFrom").map_err(|e| e.to_string())?
        }
        None => WINDOW_START,
    };
    let until = match &info.valid_until {
        // A plain end date covers its last second; the interval end is exclusive.
        Some(text) => {
            parse_instant(text, DateRole::End, "validUntil").map_err(|e| e.to_string())?
        }
        None => WINDOW_END,
    };
    let (from, until) = (from.max(WINDOW_START), until.min(WINDOW_END));
    // Room for the longest random borrow and for the contended day.
    if until - from < MAX_BORROW_SECS + CONTENDED_SECS {
        return Err(format!(
            "it is valid from {} to {}",
            info.valid_from.as_deref().unwrap_or("always"),
            info.valid_until.as_deref().unwrap_or("forever"),
        ));
    }
    Ok(TargetLicense {
        id: LicenseRef {
            feature: info.feature.clone(),
            uuid: info.uuid.clone(),
        },
        count: u64::from(info.count),
        from,
        until,
    })
}

/// A random MAC host id, `MAC:` and 12 upper-case hex digits.
pub fn random_host_id<R: Rng + ?Sized>(rng: &mut R) -> String {
    let mac: u64 = rng.gen_range(0..1 << 48);
    format!("MAC:{mac:012X}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use licensed::borrow::host_id::HostId;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn license(uuid: &str, count: u32, from: Option<&str>, until: Option<&str>) -> LicenseInfo {
        LicenseInfo {
            feature: "MVTec_HALCON".into(),
            uuid: uuid.into(),
            version: "26.05".into(),
            edition: "Steady".into(),
            modules: "fc".into(),
            count,
            valid_from: from.map(str::to_string),
            valid_until: until.map(str::to_string),
            borrowed_intervals: Vec::new(),
        }
    }

    fn by_ref(text: &str) -> LicenseRef {
        text.parse().unwrap()
    }

    #[test]
    fn the_window_constants_are_the_documented_dates() {
        assert_eq!(format_instant(WINDOW_START), "2027-01-01T00:00:00Z");
        assert_eq!(format_instant(WINDOW_END), "2031-01-01T00:00:00Z");
    }

    #[test]
    fn license_refs_are_feature_slash_uuid() {
        assert_eq!(
            by_ref("MVTec_HALCON/bench"),
            LicenseRef {
                feature: "MVTec_HALCON".into(),
                uuid: "bench".into()
            }
        );
        assert_eq!(
            by_ref("MVTec_HALCON/bench").to_string(),
            "MVTec_HALCON/bench"
        );
        for bad in ["", "MVTec_HALCON", "/bench", "MVTec_HALCON/"] {
            assert!(bad.parse::<LicenseRef>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn discovery_splits_large_and_small_counts() {
        let pool = [
            license("expired", 1, None, Some("2026-12-31T23:59:59Z")),
            license("small", 5, None, Some("2028-12-31")),
            license("bench", 100_000_000, None, None),
            license("bench2", 100_000_000, Some("2026-01-01"), None),
        ];
        let plan = LicensePlan::choose(&pool, &[]).unwrap();
        let regular: Vec<&str> = plan.regular.iter().map(|l| l.id.uuid.as_str()).collect();
        assert_eq!(regular, ["bench", "bench2"]);
        assert_eq!(
            plan.contended.id.uuid, "small",
            "the expired license is not usable"
        );
        assert_eq!(plan.contended.from, WINDOW_START);
        assert_eq!(format_instant(plan.contended.until), "2028-12-31T23:59:59Z");
        let notes = plan.describe(0.1);
        assert!(
            notes[1].contains("MVTec_HALCON/small (count 5)"),
            "{notes:?}"
        );
        assert_eq!(notes.len(), 2);
    }

    #[test]
    fn requested_licenses_must_exist_and_be_usable() {
        let pool = [
            license("expired", 1, None, Some("2026-12-31")),
            license("bench", 100_000_000, None, None),
        ];
        let plan = LicensePlan::choose(&pool, &[by_ref("MVTec_HALCON/bench")]).unwrap();
        assert_eq!(plan.regular.len(), 1);
        assert_eq!(plan.contended.id.uuid, "bench");
        assert_eq!(
            plan.describe(0.5).len(),
            3,
            "a warning that conflicts are unlikely"
        );
        assert_eq!(
            LicensePlan::choose(&pool, &[by_ref("MVTec_HALCON/nope")]),
            Err(PlanError::Unknown("MVTec_HALCON/nope".into()))
        );
        assert!(matches!(
            LicensePlan::choose(&pool, &[by_ref("MVTec_HALCON/expired")]),
            Err(PlanError::Unusable { .. })
        ));
        assert_eq!(LicensePlan::choose(&[], &[]), Err(PlanError::EmptyPool));
        assert_eq!(
            LicensePlan::choose(&pool[..1], &[]),
            Err(PlanError::NothingUsable)
        );
    }

    #[test]
    fn random_intervals_stay_inside_the_window() {
        let pool = [license("short", 10, Some("2027-03-01"), Some("2027-03-10"))];
        let plan = LicensePlan::choose(&pool, &[]).unwrap();
        let target = &plan.regular[0];
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..1000 {
            let (from, until) = target.random_interval(&mut rng);
            assert!(from >= target.from && until <= target.until);
            assert!((MIN_BORROW_SECS..=MAX_BORROW_SECS).contains(&(until - from)));
        }
        let (from, until) = target.contended_interval();
        assert_eq!(format_instant(from), "2027-03-01T00:00:00Z");
        assert_eq!(format_instant(until), "2027-03-02T00:00:00Z");
    }

    #[test]
    fn random_host_ids_are_valid_mac_ids() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..100 {
            let id = random_host_id(&mut rng);
            assert_eq!(id.len(), 16, "{id}");
            assert_eq!(HostId::parse(&id).unwrap().as_str(), id);
        }
    }
}

//! The borrow decision: the checks 3 to 6 of docs/protocol.md §5.2, in order, first
//! failure wins.
//!
//! Checks 1 (params) and 2 (host id) happen when a request is decoded, because they need
//! nothing but the request. Everything here needs the ledger and the time, so it runs in
//! the state machine's apply, in log order, with the leader-stamped time: that is what
//! gives a race for the last seat exactly one winner on every replica.

use serde::{Deserialize, Serialize};

use super::capacity::CapacityIndex;
use super::host_id::HostId;
use super::license::{License, LicenseKey};
use super::time::{format_instant, UnixSeconds};

/// How far in the past a `validFrom` may lie. Clients stamp "now" on their side and
/// truncate it (MVTec's Python client does; docs/protocol.md §5.4), so a little backdating is normal; more
/// than this is a mistake. Kept well below the retention period so that every borrow
/// a new one could overlap is still in the capacity index.
pub const MAX_BACKDATE_SECS: i64 = 24 * 3600;

/// 9999-12-31T23:59:59Z: RFC 3339 has four-digit years, so nothing may end later.
pub const LATEST_INSTANT: UnixSeconds = 253_402_300_799;

/// A borrow as the client asked for it, already decoded (host id valid, dates parsed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BorrowRequest {
    /// Which license.
    pub key: LicenseKey,
    /// Which machine.
    pub host_id: HostId,
    /// Requested start; `None` means "now" (the leader's time when the borrow is applied).
    pub valid_from: Option<UnixSeconds>,
    /// Requested end; `None` means "as long as the license allows" (LicenseSpring's
    /// `borrowed_until: null`).
    pub valid_until: Option<UnixSeconds>,
    /// Free text the client attaches.
    pub user_info: Option<String>,
}

impl BorrowRequest {
    /// Whether `self`, sent with the `requestId` of `first`, is a retry of it: the same
    /// license, host, end and user info. The start may differ: clients commonly stamp
    /// `validFrom` with their own "now" on every attempt, and a retry answers the first
    /// borrow as it was made anyway.
    pub fn is_retry_of(&self, first: &BorrowRequest) -> bool {
        self.key == first.key
            && self.host_id == first.host_id
            && self.valid_until == first.valid_until
            && self.user_info == first.user_info
    }
}

/// Why a borrow was refused, one variant per Borrow API error code (docs/protocol.md §7;
/// the mapping to codes is in `rpc::error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BorrowError {
    /// Code 32: the license is fully borrowed at some instant of the interval.
    #[error(
        "all {count} seat(s) of {feature}/{uuid} are borrowed at some instant of [{from}, {until})"
    )]
    NotAvailable {
        /// Feature of the license.
        feature: String,
        /// Uuid of the license.
        uuid: String,
        /// Its count.
        count: u32,
        /// Requested start, RFC 3339.
        from: String,
        /// Requested end, RFC 3339.
        until: String,
    },
    /// Code 33: the interval ends after the license expires.
    #[error("the borrow would end at {until} but the license expires at {license_until}")]
    AfterExpiration {
        /// Requested end.
        until: String,
        /// The license's own end.
        license_until: String,
    },
    /// Code 34: no license with this feature and uuid (or no borrow with this id).
    #[error("{0}")]
    NoSuchLicense(String),
    /// Code 35: the interval is malformed, too long, in the past or outside the license.
    #[error("{0}")]
    InvalidInterval(String),
    /// Code 36: the host id is malformed or not allowed to borrow.
    #[error("{0}")]
    InvalidHostId(String),
    /// Code 32: the license, or this host on it, already holds as many current and
    /// upcoming borrows as the ledger keeps for one (limits on client-created state), or
    /// as the license's `maxPerHost` allows.
    #[error("{0}")]
    OverLimit(String),
}

impl BorrowError {
    /// The Borrow API's error code (docs/protocol.md §7).
    pub fn code(&self) -> i64 {
        match self {
            BorrowError::NotAvailable { .. } | BorrowError::OverLimit(_) => 32,
            BorrowError::AfterExpiration { .. } => 33,
            BorrowError::NoSuchLicense(_) => 34,
            BorrowError::InvalidInterval(_) => 35,
            BorrowError::InvalidHostId(_) => 36,
        }
    }
}

/// The interval a borrow was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// Start, inclusive.
    pub from: UnixSeconds,
    /// End, exclusive.
    pub until: UnixSeconds,
}

/// Decides a borrow. `license` and `index` are the ledger's entry for the requested key
/// (`None` when no such license exists); `pool_max_borrow_secs` is the pool-wide limit.
pub fn decide(
    request: &BorrowRequest,
    now: UnixSeconds,
    license: Option<(&License, &CapacityIndex)>,
    pool_max_borrow_secs: i64,
) -> Result<Granted, BorrowError> {
    let max_borrow = license
        .and_then(|(license, _)| license.max_borrow_secs)
        .unwrap_or(pool_max_borrow_secs);
    let invalid = |reason: String| Err(BorrowError::InvalidInterval(reason));

    // 3. the interval itself
    let from = request.valid_from.unwrap_or(now);
    let until = match request.valid_until {
        Some(until) => until,
        // "As long as allowed": the longest borrow, cut at the license's own end.
        None => {
            let longest = from.saturating_add(max_borrow);
            license
                .and_then(|(license, _)| license.valid_until)
                .map_or(longest, |end| longest.min(end))
        }
    };
    if until > LATEST_INSTANT {
        return invalid(format!(
            "the interval would end after {}, the last date this API can express",
            format_instant(LATEST_INSTANT)
        ));
    }
    if until <= from {
        return invalid(format!(
            "validUntil {} must be later than validFrom {}",
            format_instant(until),
            format_instant(from)
        ));
    }
    if until <= now {
        return invalid(format!(
            "validUntil {} is not in the future (server time {})",
            format_instant(until),
            format_instant(now)
        ));
    }
    if from < now.saturating_sub(MAX_BACKDATE_SECS) {
        return invalid(format!(
            "validFrom {} lies more than {} hours in the past (server time {})",
            format_instant(from),
            MAX_BACKDATE_SECS / 3600,
            format_instant(now)
        ));
    }
    if until - from > max_borrow {
        return invalid(format!(
            "the interval is {} long but this license can be borrowed for at most {}",
            describe_secs(until - from),
            describe_secs(max_borrow)
        ));
    }

    // 4. the license exists
    let Some((license, index)) = license else {
        return Err(BorrowError::NoSuchLicense(format!(
            "no license with feature {:?} and uuid {:?}",
            request.key.feature, request.key.uuid
        )));
    };

    // 5. inside the license's own validity
    if let Some(license_until) = license.valid_until {
        if until > license_until {
            return Err(BorrowError::AfterExpiration {
                until: format_instant(until),
                license_until: format_instant(license_until),
            });
        }
    }
    if let Some(license_from) = license.valid_from {
        if from < license_from {
            return invalid(format!(
                "validFrom {} is before the license becomes valid at {}",
                format_instant(from),
                format_instant(license_from)
            ));
        }
    }

    // 6. capacity over the whole interval (seats kept back from borrowing do not count)
    let seats = license.borrowable_seats();
    // Chaos builds only, `LICENSED_BROKEN=capacity-off-by-one`: one seat too many. Here,
    // in the decision every replica's apply makes, so the replicas still agree.
    #[cfg(feature = "failpoints")]
    let fits = if crate::broken::is(crate::broken::Broken::CapacityOffByOne) {
        index.fits(from, until, seats.saturating_add(1))
    } else {
        index.fits(from, until, seats)
    };
    #[cfg(not(feature = "failpoints"))]
    let fits = index.fits(from, until, seats);
    if !fits && seats < license.count && index.fits(from, until, license.count) {
        // The seats are there, but the license keeps some back from borrowing.
        return Err(BorrowError::OverLimit(format!(
            "{seats} of the {} seats of {}/{} may be out on borrow at once (maxBorrowed), and {seats} are at some instant of [{}, {})",
            license.count,
            license.key.feature,
            license.key.uuid,
            format_instant(from),
            format_instant(until)
        )));
    }
    if !fits {
        return Err(BorrowError::NotAvailable {
            feature: license.key.feature.clone(),
            uuid: license.key.uuid.clone(),
            count: seats,
            from: format_instant(from),
            until: format_instant(until),
        });
    }
    Ok(Granted { from, until })
}

/// `30d`, `12h 30m`, `45s`: durations in error messages a person reads.
pub fn describe_secs(secs: i64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (hours, rest) = (rest / 3_600, rest % 3_600);
    let (minutes, seconds) = (rest / 60, rest % 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixSeconds = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn license(count: u32) -> License {
        License {
            key: LicenseKey {
                feature: "MVTec_HDevelop".into(),
                uuid: "118cf2e7b3d20001".into(),
            },
            version: "26.05".into(),
            edition: "Progress".into(),
            modules: "fc123bdomit".into(),
            count,
            valid_from: Some(NOW - 10 * DAY),
            valid_until: Some(NOW + 60 * DAY),
            max_borrow_secs: None,
            max_borrowed: None,
            max_per_host: None,
        }
    }

    fn request(from: Option<UnixSeconds>, until: Option<UnixSeconds>) -> BorrowRequest {
        BorrowRequest {
            key: license(1).key,
            host_id: HostId::parse("MAC:2C549188C9E3").unwrap(),
            valid_from: from,
            valid_until: until,
            user_info: None,
        }
    }

    fn code(result: Result<Granted, BorrowError>) -> i64 {
        result
            .map(|_| 0)
            .unwrap_or_else(|e| crate::rpc::error::borrow_code(&e))
    }

    #[test]
    fn each_check_in_order() {
        let lic = license(1);
        let index = CapacityIndex::new();
        let found = Some((&lic, &index));
        let max = 30 * DAY;
        // 3: reversed, empty, in the past, backdated too far, too long
        assert_eq!(
            code(decide(
                &request(Some(NOW + 10), Some(NOW + 5)),
                NOW,
                found,
                max
            )),
            35
        );
        assert_eq!(
            code(decide(
                &request(Some(NOW + 10), Some(NOW + 10)),
                NOW,
                found,
                max
            )),
            35
        );
        assert_eq!(
            code(decide(&request(Some(NOW - 20), Some(NOW)), NOW, found, max)),
            35
        );
        assert_eq!(
            code(decide(
                &request(Some(NOW - 2 * DAY), Some(NOW + 10)),
                NOW,
                found,
                max
            )),
            35
        );
        assert_eq!(
            code(decide(
                &request(None, Some(NOW + 31 * DAY)),
                NOW,
                found,
                max
            )),
            35
        );
        // 3 wins over 4: an invalid interval on an unknown license is still 35
        assert_eq!(
            code(decide(
                &request(Some(NOW + 10), Some(NOW + 5)),
                NOW,
                None,
                max
            )),
            35
        );
        // 4
        assert_eq!(
            code(decide(&request(None, Some(NOW + DAY)), NOW, None, max)),
            34
        );
        // 5: ending after expiry is 33, starting before validity is 35
        let mut short = license(1);
        short.valid_until = Some(NOW + DAY);
        assert_eq!(
            code(decide(
                &request(None, Some(NOW + 2 * DAY)),
                NOW,
                Some((&short, &index)),
                max
            )),
            33
        );
        let mut late = license(1);
        late.valid_from = Some(NOW + DAY);
        assert_eq!(
            code(decide(
                &request(None, Some(NOW + 2 * DAY)),
                NOW,
                Some((&late, &index)),
                max
            )),
            35
        );
        // 6
        let mut full = CapacityIndex::new();
        full.insert(NOW, NOW + DAY);
        assert_eq!(
            code(decide(
                &request(None, Some(NOW + 2 * DAY)),
                NOW,
                Some((&lic, &full)),
                max
            )),
            32
        );
        // touching is fine (half-open)
        assert_eq!(
            code(decide(
                &request(Some(NOW + DAY), Some(NOW + 2 * DAY)),
                NOW,
                Some((&lic, &full)),
                max
            )),
            0
        );
    }

    #[test]
    fn defaults() {
        let lic = license(1);
        let index = CapacityIndex::new();
        let granted = decide(&request(None, None), NOW, Some((&lic, &index)), 30 * DAY).unwrap();
        assert_eq!(
            granted,
            Granted {
                from: NOW,
                until: NOW + 30 * DAY
            }
        );
        let mut own_limit = license(1);
        own_limit.max_borrow_secs = Some(DAY);
        let granted = decide(
            &request(None, None),
            NOW,
            Some((&own_limit, &index)),
            30 * DAY,
        )
        .unwrap();
        assert_eq!(granted.until, NOW + DAY);
    }

    #[test]
    fn describes_durations() {
        assert_eq!(describe_secs(30 * DAY), "30d");
        assert_eq!(describe_secs(DAY + 3_600 + 61), "1d 1h 1m 1s");
        assert_eq!(describe_secs(0), "0s");
    }
}

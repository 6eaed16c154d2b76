//! Host ids: the machine a borrowed license is bound to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated host id in canonical form: `MAC:` + 12 upper-case hex digits, or a
/// CodeMeter dongle id `CM:3-` + 10 decimal digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostId(String);

/// Why a host id was refused (JSON-RPC code 36).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hostId {given:?} is not a host id: expected MAC:XXXXXXXXXXXX (12 hex digits) or CM:3-XXXXXXXXXX (10 decimal digits)")]
pub struct HostIdError {
    /// The text that was given, kept for the error message.
    pub given: String,
}

const MAC_PREFIX: &str = "MAC:";
const DONGLE_PREFIX: &str = "CM:3-";

impl HostId {
    /// Parses and canonicalises a host id. The prefix is matched case-insensitively and hex
    /// digits are stored upper case, so `mac:2c54…` and `MAC:2C54…` are the same machine.
    pub fn parse(text: &str) -> Result<HostId, HostIdError> {
        let refuse = || HostIdError {
            given: truncate_for_message(text),
        };
        let upper = text.to_ascii_uppercase();
        if let Some(digits) = upper.strip_prefix(MAC_PREFIX) {
            if digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(HostId(upper));
            }
        } else if let Some(digits) = upper.strip_prefix(DONGLE_PREFIX) {
            if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(HostId(upper));
            }
        }
        Err(refuse())
    }

    /// The canonical text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Keeps error messages small when a client sends a huge string.
pub(crate) fn truncate_for_message(text: &str) -> String {
    const LIMIT: usize = 64;
    if text.len() <= LIMIT {
        return text.to_string();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for HostId {
    type Error = HostIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        HostId::parse(&value)
    }
}

impl From<HostId> for String {
    fn from(value: HostId) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_mac_in_either_case_and_stores_upper_case() {
        assert_eq!(
            HostId::parse("MAC:2C549188C9E3").unwrap().as_str(),
            "MAC:2C549188C9E3"
        );
        assert_eq!(
            HostId::parse("mac:2c549188c9e3").unwrap().as_str(),
            "MAC:2C549188C9E3"
        );
    }

    #[test]
    fn accepts_dongle_ids() {
        assert_eq!(
            HostId::parse("CM:3-1234567890").unwrap().as_str(),
            "CM:3-1234567890"
        );
    }

    #[test]
    fn refuses_malformed_ids() {
        for bad in [
            "",
            "MAC:",
            "MAC:2C549188C9E",
            "MAC:2C549188C9E3A",
            "MAC:2C549188C9EG",
            "MAC-2C549188C9E3",
            "2C549188C9E3",
            "CM:3-123456789",
            "CM:3-12345678901",
            "CM:3-12345678AB",
            "CM:2-1234567890",
            " MAC:2C549188C9E3",
        ] {
            assert!(HostId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn error_message_is_bounded() {
        let long = "x".repeat(10_000);
        let err = HostId::parse(&long).unwrap_err();
        assert!(err.to_string().len() < 300);
    }
}

//! A client API key as a client holds it: `lk_<keyId>_<secret>`, its id, its secret and
//! the scopes a key can have. Pure: the random bytes of a new key come in as data.
//!
//! The key text is a bearer token: `Authorization: Bearer lk_0f3a9c5d2e7b6a18_<secret>`.
//! The id (16 lower-case hex digits) names the key in listings, logs and revocations; the
//! secret (32 random bytes, base64url without padding: 43 characters) proves possession.
//! The cluster stores only SHA-256 of the secret bytes ([`SecretHash`]), so neither the
//! replicated log nor a snapshot nor a listing holds anything a client could call with.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::borrow::return_token::constant_time_eq;

/// What every key text starts with: tells a key from the admin token at a glance.
pub const KEY_PREFIX: &str = "lk_";
/// Hex digits of a key id.
const ID_DIGITS: usize = 16;
/// Random bytes of a key's secret.
pub const SECRET_BYTES: usize = 32;
/// Base64url characters of the secret (no padding).
const SECRET_CHARS: usize = 43;

/// A key's id: public, unique in the cluster, shown as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(u64);

impl KeyId {
    /// The id with this number.
    pub fn from_u64(value: u64) -> KeyId {
        KeyId(value)
    }

    /// Parses the 16 lower-case hex digits a key id is shown as.
    pub fn parse(text: &str) -> Result<KeyId, KeyTextError> {
        let well_formed = text.len() == ID_DIGITS
            && text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !well_formed {
            return Err(KeyTextError::BadId);
        }
        u64::from_str_radix(text, 16)
            .map(KeyId)
            .map_err(|_| KeyTextError::BadId)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyTextError;
    fn from_str(text: &str) -> Result<KeyId, KeyTextError> {
        KeyId::parse(text)
    }
}

/// The secret part of a key. Never printed: `Debug` shows nothing of it, and it has no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret([u8; SECRET_BYTES]);

impl KeySecret {
    /// A secret from random bytes (the caller draws them).
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> KeySecret {
        KeySecret(bytes)
    }

    /// What the cluster stores instead of the secret.
    pub fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySecret(..)")
    }
}

/// SHA-256 of a key's secret bytes: what the ledger keeps. The secret has 256 random
/// bits, so a plain hash is enough (no salt or slow hash needed: nothing to guess).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Whether `secret` is the one this hash was made from. Compares in constant time.
    pub fn matches(&self, secret: &KeySecret) -> bool {
        constant_time_eq(&secret.hash().0, &self.0)
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// A whole key as a client presents it: id and secret. `Debug` shows the id only.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyText {
    id: KeyId,
    secret: KeySecret,
}

impl ApiKeyText {
    /// The key with this id and secret.
    pub fn new(id: KeyId, secret: KeySecret) -> ApiKeyText {
        ApiKeyText { id, secret }
    }

    /// Whether a bearer token is meant as an API key (it starts with [`KEY_PREFIX`]); the
    /// admin token and other bearer tokens are not.
    pub fn looks_like_key(text: &str) -> bool {
        text.starts_with(KEY_PREFIX)
    }

    /// Parses `lk_<16 lower-case hex digits>_<43 base64url characters>`. Only the
    /// canonical encoding of the secret is accepted, so one key has one text.
    pub fn parse(text: &str) -> Result<ApiKeyText, KeyTextError> {
        let rest = text.strip_prefix(KEY_PREFIX).ok_or(KeyTextError::NotAKey)?;
        // The secret's alphabet has `_` too: split by position, not by separator.
        let (id, secret) = rest
            .split_at_checked(ID_DIGITS)
            .ok_or(KeyTextError::BadId)?;
        let id = KeyId::parse(id)?;
        let secret = secret.strip_prefix('_').ok_or(KeyTextError::BadSecret)?;
        if secret.len() != SECRET_CHARS {
            return Err(KeyTextError::BadSecret);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(secret)
            .map_err(|_| KeyTextError::BadSecret)?;
        let bytes: [u8; SECRET_BYTES] = bytes.try_into().map_err(|_| KeyTextError::BadSecret)?;
        Ok(ApiKeyText::new(id, KeySecret::from_bytes(bytes)))
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key's secret.
    pub fn secret(&self) -> &KeySecret {
        &self.secret
    }

    /// The text a client sends. Called once, for the answer that creates the key; never
    /// for a log line.
    pub fn expose(&self) -> String {
        format!(
            "{KEY_PREFIX}{}_{}",
            self.id,
            URL_SAFE_NO_PAD.encode(self.secret.0)
        )
    }
}

impl fmt::Debug for ApiKeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyText({KEY_PREFIX}{}_..)", self.id)
    }
}

/// Why a bearer token is not a well-formed key. Says which part is wrong, never echoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    /// No `lk_` prefix.
    #[error("an API key starts with {KEY_PREFIX}")]
    NotAKey,
    /// The id is not 16 lower-case hex digits.
    #[error("an API key's id is 16 lower-case hex digits ({KEY_PREFIX}<keyId>_<secret>)")]
    BadId,
    /// The secret is not 43 base64url characters encoding 32 bytes.
    #[error("an API key's secret is 43 base64url characters ({KEY_PREFIX}<keyId>_<secret>)")]
    BadSecret,
}

/// What a key may do. Ordered: each scope allows what the ones before it allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `ListLicensesV1` and `GetBorrowedLicenseV1`.
    Read,
    /// Read, plus `BorrowLicenseV1` and `ReturnLicenseV1` with the borrow's `returnToken`.
    Borrow,
    /// Everything: returning any borrow without its token, and managing keys.
    Admin,
}

impl Scope {
    /// Every scope, weakest first.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Borrow, Scope::Admin];

    /// The scope's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Borrow => "borrow",
            Scope::Admin => "admin",
        }
    }

    /// Whether a key of this scope may do what needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(text: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
            .ok_or_else(|| "the scope is one of read, borrow, admin".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u64, fill: u8) -> ApiKeyText {
        ApiKeyText::new(KeyId::from_u64(id), KeySecret::from_bytes([fill; 32]))
    }

    #[test]
    fn a_key_text_parses_back_to_the_same_key() {
        for (id, fill) in [(0, 0), (0x0f3a_9c5d_2e7b_6a18, 0xfb), (u64::MAX, 0xff)] {
            let key = key(id, fill);
            let text = key.expose();
            assert_eq!(text.len(), 63, "{text}");
            assert!(text.starts_with(&format!("lk_{id:016x}_")), "{text}");
            assert_eq!(ApiKeyText::parse(&text), Ok(key));
        }
        // 0xff bytes encode as `_`: the secret's `_` is no separator.
        assert!(key(1, 0xff).expose()[20..].contains('_'));
    }

    #[test]
    fn malformed_key_texts_are_refused_with_the_part_at_fault() {
        let good = key(0xabc, 7).expose();
        let secret = &good[20..];
        let cases = [
            ("", KeyTextError::NotAKey),
            ("Bearer-ish", KeyTextError::NotAKey),
            ("LK_0000000000000abc_x", KeyTextError::NotAKey),
            ("lk_", KeyTextError::BadId),
            ("lk_abc", KeyTextError::BadId),
            ("lk_0000000000000ABC_x", KeyTextError::BadId),
            ("lk_000000000000zabc_x", KeyTextError::BadId),
            ("lk_+000000000000abc_x", KeyTextError::BadId),
            ("lk_0000000000000abc", KeyTextError::BadSecret),
            ("lk_0000000000000abc-", KeyTextError::BadSecret),
            ("lk_0000000000000abc_", KeyTextError::BadSecret),
            ("lk_0000000000000abc_!!!", KeyTextError::BadSecret),
        ];
        for (text, expected) in cases {
            assert_eq!(ApiKeyText::parse(text), Err(expected), "{text:?}");
        }
        let mut long = good.clone();
        long.push('A');
        assert_eq!(ApiKeyText::parse(&long), Err(KeyTextError::BadSecret));
        assert_eq!(
            ApiKeyText::parse(&good[..good.len() - 1]),
            Err(KeyTextError::BadSecret)
        );
        // Standard base64's `+` and `/` are not base64url.
        let plus = format!("lk_0000000000000abc_+{}", &secret[1..]);
        assert_eq!(ApiKeyText::parse(&plus), Err(KeyTextError::BadSecret));
        // The last character carries 2 unused bits: only the canonical one (zero bits)
        // decodes, so one key has exactly one text.
        let canonical = key(0xabc, 0).expose();
        assert!(canonical.ends_with('A'), "{canonical}");
        let other_tail = format!("{}B", &canonical[..canonical.len() - 1]);
        assert_eq!(ApiKeyText::parse(&other_tail), Err(KeyTextError::BadSecret));
    }

    #[test]
    fn the_stored_hash_is_sha256_of_the_secret_bytes_and_matches_only_that_secret() {
        let secret = KeySecret::from_bytes([3; 32]);
        let expected: [u8; 32] = Sha256::digest([3u8; 32]).into();
        assert_eq!(secret.hash(), SecretHash(expected));
        assert!(secret.hash().matches(&secret));
        assert!(!secret.hash().matches(&KeySecret::from_bytes([4; 32])));
        let mut one_bit = [3u8; 32];
        one_bit[31] ^= 1;
        assert!(!secret.hash().matches(&KeySecret::from_bytes(one_bit)));
    }

    #[test]
    fn nothing_secret_shows_in_debug_output() {
        let key = key(0x0f3a_9c5d_2e7b_6a18, 0x5a);
        let text = key.expose();
        let secret_part = &text[20..];
        for shown in [
            format!("{key:?}"),
            format!("{:?}", key.secret()),
            format!("{:?}", key.secret().hash()),
            format!("{:#?}", key),
        ] {
            assert!(!shown.contains(secret_part), "{shown}");
            assert!(!shown.contains("5a5a"), "{shown}");
        }
        assert_eq!(format!("{key:?}"), "ApiKeyText(lk_0f3a9c5d2e7b6a18_..)");
    }

    #[test]
    fn key_ids_print_as_16_hex_digits_and_parse_back() {
        let id = KeyId::from_u64(0xab);
        assert_eq!(id.to_string(), "00000000000000ab");
        assert_eq!("00000000000000ab".parse::<KeyId>(), Ok(id));
        for bad in [
            "ab",
            "00000000000000AB",
            "000000000000000ab",
            "-000000000000000",
        ] {
            assert_eq!(KeyId::parse(bad), Err(KeyTextError::BadId), "{bad}");
        }
    }

    #[test]
    fn each_scope_allows_what_the_weaker_ones_allow() {
        assert!(Scope::Admin.allows(Scope::Borrow) && Scope::Admin.allows(Scope::Read));
        assert!(Scope::Borrow.allows(Scope::Read) && Scope::Borrow.allows(Scope::Borrow));
        assert!(!Scope::Borrow.allows(Scope::Admin));
        assert!(!Scope::Read.allows(Scope::Borrow));
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
            assert_eq!(
                serde_json::to_value(scope).expect("json"),
                serde_json::json!(scope.as_str())
            );
        }
        assert!("Admin".parse::<Scope>().is_err());
        assert!("write".parse::<Scope>().is_err());
    }
}

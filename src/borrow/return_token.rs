//! The proof that a `ReturnLicenseV1` comes from the borrower.
//!
//! Borrow ids are public (every listing shows them), so an id alone must not end a borrow:
//! whoever could list could return every borrow and borrow the freed seats, while the old
//! holders keep licenses that verify offline until their old end. The borrow's answer
//! therefore carries a `returnToken`, a keyed hash of the borrow id that only the answer
//! hands out (never listed, never re-served by `GetBorrowedLicenseV1`, never logged).
//!
//! The token is derived, not stored: HMAC-SHA-256 of the borrow id under a key derived
//! from the pool's signing key, which every node holds through the replicated ledger. Any
//! node can check a token without a ledger lookup, a retried borrow (same `requestId`)
//! gets the same token again, and nothing is added to the replicated state.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// HMAC-SHA-256's block size.
const BLOCK: usize = 64;
/// Separates this key from every other use of the signing key.
const KEY_CONTEXT: &[u8] = b"licensed return-token key v1";

/// The key that makes and checks return tokens.
#[derive(Clone)]
pub struct ReturnTokenKey {
    key: [u8; 32],
}

impl std::fmt::Debug for ReturnTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReturnTokenKey(..)")
    }
}

impl ReturnTokenKey {
    /// Derives the key from the pool's Ed25519 signing secret.
    pub fn from_signing_secret(secret: &[u8; 32]) -> ReturnTokenKey {
        let mut hash = Sha256::new();
        hash.update(KEY_CONTEXT);
        hash.update(secret);
        ReturnTokenKey {
            key: hash.finalize().into(),
        }
    }

    /// The token for a borrow: 43 URL-safe base64 characters.
    pub fn token_for(&self, borrow_id: Uuid) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(borrow_id.as_bytes()))
    }

    /// Whether `token` is the borrow's token. Compares in constant time.
    pub fn verify(&self, borrow_id: Uuid, token: &str) -> bool {
        constant_time_eq(self.token_for(borrow_id).as_bytes(), token.as_bytes())
    }

    /// HMAC-SHA-256 (RFC 2104) of `message`.
    fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut inner_pad = [0x36u8; BLOCK];
        let mut outer_pad = [0x5cu8; BLOCK];
        for (i, byte) in self.key.iter().enumerate() {
            inner_pad[i] ^= byte;
            outer_pad[i] ^= byte;
        }
        let inner = Sha256::new()
            .chain_update(inner_pad)
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(outer_pad)
            .chain_update(inner)
            .finalize()
            .into()
    }
}

/// Equality of two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> ReturnTokenKey {
        ReturnTokenKey::from_signing_secret(&[seed; 32])
    }

    #[test]
    fn a_token_opens_its_own_borrow_only() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let token = key(1).token_for(a);
        assert_eq!(token.len(), 43);
        assert!(key(1).verify(a, &token));
        assert!(!key(1).verify(b, &token));
        assert!(!key(2).verify(a, &token), "another pool's key");
        assert!(!key(1).verify(a, &token[..42]));
        assert!(!key(1).verify(a, ""));
    }

    #[test]
    fn tokens_are_deterministic_per_key_and_borrow() {
        let id = Uuid::new_v4();
        assert_eq!(key(7).token_for(id), key(7).token_for(id));
        assert_ne!(key(7).token_for(id), key(8).token_for(id));
    }

    #[test]
    fn the_mac_is_hmac_sha256() {
        // RFC 4231 test case 2 needs a 4-byte key; check the construction with a 32-byte
        // key against a value computed independently (Python: hmac.new(k, m, sha256)).
        let key = ReturnTokenKey { key: [0x0b; 32] };
        let mac = key.mac(b"Hi There");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}

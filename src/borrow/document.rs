//! The signed license document: the `license` string a borrow returns (docs/protocol.md §8.1).
//!
//! A machine that borrowed a license goes offline with it, so the string must carry
//! everything needed to check it — feature, host, interval — and a signature that the
//! pool's public key verifies without asking the server.
//!
//! Wire form: `LIC1.` + base64url-no-pad(payload) + `.` + base64url-no-pad(signature), where
//! the payload is the compact JSON of a [`LicenseDocument`] (fields in declaration order)
//! and the signature is Ed25519 over exactly those payload bytes. Serialisation and
//! Ed25519 are both deterministic, so the server can re-render a borrow's license on any
//! node, at any time, and return the identical string.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::time::{format_instant, parse_instant, DateRole, UnixSeconds};

/// The prefix naming the wire format; a new layout gets a new prefix.
pub const LICENSE_PREFIX: &str = "LIC1.";

/// The payload's `format` field for this layout.
pub const DOCUMENT_FORMAT: u32 = 1;

/// Longest license string [`decode`] looks at. Real licenses are well under 2 KiB; the
/// bound keeps the work done on hostile input small.
pub const MAX_LICENSE_LEN: usize = 16 * 1024;

/// How many leading public-key bytes make up a key id (16 hex digits).
const KEY_ID_BYTES: usize = 8;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE {
/// OID 1.3.101.112 }, BIT STRING of 33 bytes with 0 unused bits }, followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What a borrowed license says. Field order is the wire order of the signed payload:
/// do not reorder fields, it would change every license string the server re-renders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseDocument {
    /// Layout version of this document, [`DOCUMENT_FORMAT`]; lets a checker refuse what
    /// it does not understand instead of misreading it.
    pub format: u32,
    /// The licensed feature, e.g. `MVTec_HDevelop`.
    pub feature: String,
    /// The license's uuid; unique together with `feature`.
    pub uuid: String,
    /// The product version the license is for.
    pub version: String,
    /// The license's edition.
    pub edition: String,
    /// The module string of the license.
    pub modules: String,
    /// The machine the license is bound to, in canonical upper-case form.
    pub host_id: String,
    /// Start of the borrow, inclusive, RFC 3339 UTC with `Z`, whole seconds.
    pub valid_from: String,
    /// End of the borrow, exclusive, same form.
    pub valid_until: String,
    /// The borrow's id (a UUID), to look the borrow up on the server.
    pub borrow_id: String,
    /// Free text the borrower attached; omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<String>,
    /// When the server accepted the borrow, same date form.
    pub issued_at: String,
    /// Which key signed it ([`PublicKey::key_id`]), so a checker holding several pools'
    /// keys picks the right one and a mismatch gets a clear message.
    pub key_id: String,
}

/// Why a key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The operating system's random source failed.
    #[error("cannot draw a random signing key from the operating system: {0}")]
    Random(getrandom::Error),
    /// The text is not an Ed25519 private key in PKCS#8 PEM form.
    #[error("not an Ed25519 private key in PKCS#8 PEM form (-----BEGIN PRIVATE KEY-----): {0}")]
    PrivatePem(String),
    /// The text is not an Ed25519 public key in SPKI PEM form.
    #[error("not an Ed25519 public key in PEM form (-----BEGIN PUBLIC KEY-----): {0}")]
    PublicPem(String),
    /// The text is not standard base64.
    #[error("public key is not base64: {0}")]
    Base64(base64::DecodeError),
    /// The bytes are not 32 long.
    #[error("an Ed25519 public key has 32 bytes, this one has {0}")]
    Length(usize),
    /// 32 bytes, but not a point on the curve.
    #[error("the 32 bytes are not a valid Ed25519 public key")]
    InvalidPoint,
}

/// Why a license string does not verify. Each message tells a person what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Larger than [`MAX_LICENSE_LEN`].
    #[error("not a license string: {len} bytes long, a license is at most {MAX_LICENSE_LEN}")]
    TooLong {
        /// The length given.
        len: usize,
    },
    /// Missing the `LIC1.` prefix.
    #[error("not a license string: it must start with {LICENSE_PREFIX}")]
    Prefix,
    /// Not two dot-separated parts after the prefix.
    #[error("license string is malformed: expected {LICENSE_PREFIX}<payload>.<signature>")]
    Shape,
    /// A part is not base64url without padding.
    #[error("the {part} part of the license is not base64url: {source}")]
    Base64 {
        /// `payload` or `signature`.
        part: &'static str,
        /// What the decoder found.
        source: base64::DecodeError,
    },
    /// The signature part does not have 64 bytes.
    #[error("the signature part has {0} bytes, an Ed25519 signature has 64")]
    SignatureLength(usize),
    /// The payload is not a license document.
    #[error("the license payload is not a license document: {0}")]
    Payload(serde_json::Error),
    /// A layout this code does not know.
    #[error("license document format {0} is not supported (this program reads format {DOCUMENT_FORMAT})")]
    Format(u32),
    /// Signed by a different key than the one given.
    #[error("the license names signing key {license} but the public key given is {given}")]
    KeyId {
        /// The key id in the license.
        license: String,
        /// The id of the key used to verify.
        given: String,
    },
    /// The signature does not match the payload under the key.
    #[error("signature does not match: the license was altered or signed by another key")]
    Signature,
}

/// Why a verified license does not hold on this machine at this time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfflineCheckError {
    /// Bound to another host.
    #[error("license is for host {license} but this machine is {machine}")]
    Host {
        /// The license's host id.
        license: String,
        /// The host id checked against, upper case.
        machine: String,
    },
    /// The interval has ended.
    #[error("license expired at {until} (checked at {now})")]
    Expired {
        /// The license's `validUntil`.
        until: String,
        /// The time checked.
        now: String,
    },
    /// The interval has not started yet.
    #[error("license is valid only from {from} (checked at {now})")]
    NotYetValid {
        /// The license's `validFrom`.
        from: String,
        /// The time checked.
        now: String,
    },
    /// A date in the document does not parse (cannot happen for server-issued licenses).
    #[error("license {field} {value:?} is not an RFC 3339 date")]
    Date {
        /// `validFrom` or `validUntil`.
        field: &'static str,
        /// The text in the document.
        value: String,
    },
}

/// The pool's signing key. Only the server holds it; it is replicated in the ledger so
/// that every node signs with the same key.
pub struct LicenseSigner {
    key: SigningKey,
    key_id: String,
}

impl LicenseSigner {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<LicenseSigner, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).map_err(KeyError::Random)?;
        Ok(LicenseSigner::from_secret_bytes(&secret))
    }

    /// The key from its 32 secret bytes (the form the ledger stores).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> LicenseSigner {
        LicenseSigner::from_key(SigningKey::from_bytes(secret))
    }

    /// The 32 secret bytes, for storing the key in the ledger.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Reads a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519` output).
    pub fn from_pkcs8_pem(pem: &str) -> Result<LicenseSigner, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| KeyError::PrivatePem(e.to_string()))?;
        Ok(LicenseSigner::from_key(key))
    }

    /// Writes the key as PKCS#8 PEM, for backing it up or moving it to another pool.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::PrivatePem(e.to_string()))?;
        Ok(pem.to_string())
    }

    /// This key's id: see [`PublicKey::key_id`].
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public half, which checkers use.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_verifying_key(self.key.verifying_key())
    }

    /// Signs `doc` into a license string. The `keyId` written is always this key's id,
    /// whatever `doc.key_id` says: a license naming another key could never verify, so
    /// the signer sets it rather than trusting the caller to.
    pub fn sign(&self, doc: &LicenseDocument) -> String {
        let mut doc = doc.clone();
        doc.key_id.clone_from(&self.key_id);
        let payload = payload_bytes(&doc);
        let signature = self.key.sign(&payload);
        let mut out = String::with_capacity(LICENSE_PREFIX.len() + payload.len() * 4 / 3 + 90);
        out.push_str(LICENSE_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut out);
        out
    }

    fn from_key(key: SigningKey) -> LicenseSigner {
        let key_id = key_id_of(&key.verifying_key());
        LicenseSigner { key, key_id }
    }
}

impl std::fmt::Debug for LicenseSigner {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LicenseSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The pool's public key: what a machine needs to check a license offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    key_id: String,
}

impl PublicKey {
    /// The key id: the first 8 bytes of the public key as 16 lower-case hex digits. Short
    /// enough to read, long enough that two pools' keys do not collide by accident. It is
    /// a name, not a security check — the signature is.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the form `openssl pkey -pubout` writes.
    pub fn to_pem(&self) -> String {
        // Built by hand from the fixed RFC 8410 prefix: infallible, unlike the generic encoder.
        let mut der = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
        der.extend_from_slice(&ED25519_SPKI_PREFIX);
        der.extend_from_slice(self.key.as_bytes());
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    /// Reads an SPKI PEM public key.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| KeyError::PublicPem(e.to_string()))?;
        Ok(PublicKey::from_verifying_key(key))
    }

    /// The raw 32 key bytes in standard base64 (the `publicKey` field of `GET /public-key`).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.key.as_bytes())
    }

    /// Reads the raw 32 key bytes from standard base64.
    pub fn from_base64(text: &str) -> Result<PublicKey, KeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(KeyError::Base64)?;
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPoint)?;
        Ok(PublicKey::from_verifying_key(key))
    }

    fn from_verifying_key(key: VerifyingKey) -> PublicKey {
        PublicKey {
            key_id: key_id_of(&key),
            key,
        }
    }
}

/// Splits a license string into its document, the exact signed payload bytes and the
/// signature, without checking the signature. For showing what an unverified license
/// claims; use [`verify`] to trust it.
pub fn decode(license: &str) -> Result<(LicenseDocument, Vec<u8>, Signature), VerifyError> {
    let (payload, signature) = split(license)?;
    let doc = parse_payload(&payload)?;
    Ok((doc, payload, signature))
}

/// Checks a license string against the pool's public key and returns its document.
/// Any altered byte fails here, with a message that says which check failed.
pub fn verify(license: &str, key: &PublicKey) -> Result<LicenseDocument, VerifyError> {
    let (payload, signature) = split(license)?;
    // Signature first: nothing in an unsigned payload is worth reporting, except a key id
    // that explains *why* the signature fails.
    if key.key.verify_strict(&payload, &signature).is_err() {
        return Err(match parse_payload(&payload) {
            Ok(doc) if doc.key_id != key.key_id => VerifyError::KeyId {
                license: doc.key_id,
                given: key.key_id.clone(),
            },
            _ => VerifyError::Signature,
        });
    }
    let doc = parse_payload(&payload)?;
    if doc.key_id != key.key_id {
        // Signed by this key but naming another: not something this module produces.
        return Err(VerifyError::KeyId {
            license: doc.key_id,
            given: key.key_id.clone(),
        });
    }
    Ok(doc)
}

/// Checks that a verified document holds for `host_id` (when given) at `now_unix_secs`:
/// same host (compared upper case, as host ids are canonical upper case), and
/// `validFrom <= now < validUntil` — half-open, like every interval in the product.
pub fn check_offline(
    doc: &LicenseDocument,
    host_id: Option<&str>,
    now_unix_secs: i64,
) -> Result<(), OfflineCheckError> {
    if let Some(machine) = host_id {
        let machine = machine.trim().to_ascii_uppercase();
        if doc.host_id.to_ascii_uppercase() != machine {
            return Err(OfflineCheckError::Host {
                license: doc.host_id.clone(),
                machine,
            });
        }
    }
    let from = document_instant(&doc.valid_from, "validFrom")?;
    let until = document_instant(&doc.valid_until, "validUntil")?;
    if now_unix_secs < from {
        return Err(OfflineCheckError::NotYetValid {
            from: format_instant(from),
            now: format_instant(now_unix_secs),
        });
    }
    if now_unix_secs >= until {
        return Err(OfflineCheckError::Expired {
            until: format_instant(until),
            now: format_instant(now_unix_secs),
        });
    }
    Ok(())
}

/// The signed bytes: compact JSON in field order.
fn payload_bytes(doc: &LicenseDocument) -> Vec<u8> {
    // A struct of strings and integers always serialises; the empty fallback is never
    // taken, and would only yield a license that fails to parse, never a false one.
    serde_json::to_vec(doc).unwrap_or_default()
}

fn split(license: &str) -> Result<(Vec<u8>, Signature), VerifyError> {
    if license.len() > MAX_LICENSE_LEN {
        return Err(VerifyError::TooLong { len: license.len() });
    }
    let body = license
        .strip_prefix(LICENSE_PREFIX)
        .ok_or(VerifyError::Prefix)?;
    let (payload, signature) = body.split_once('.').ok_or(VerifyError::Shape)?;
    if payload.is_empty() || signature.contains('.') {
        return Err(VerifyError::Shape);
    }
    // The engine refuses non-zero trailing bits, so every string has one decoding only.
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|source| VerifyError::Base64 {
            part: "payload",
            source,
        })?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|source| VerifyError::Base64 {
            part: "signature",
            source,
        })?;
    let signature = Signature::from_slice(&signature)
        .map_err(|_| VerifyError::SignatureLength(signature.len()))?;
    Ok((payload, signature))
}

fn parse_payload(payload: &[u8]) -> Result<LicenseDocument, VerifyError> {
    let doc: LicenseDocument = serde_json::from_slice(payload).map_err(VerifyError::Payload)?;
    if doc.format != DOCUMENT_FORMAT {
        return Err(VerifyError::Format(doc.format));
    }
    Ok(doc)
}

fn document_instant(text: &str, field: &'static str) -> Result<UnixSeconds, OfflineCheckError> {
    parse_instant(text, DateRole::Start, field).map_err(|_| OfflineCheckError::Date {
        field,
        value: text.to_string(),
    })
}

fn key_id_of(key: &VerifyingKey) -> String {
    key.as_bytes()[..KEY_ID_BYTES]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePublicKey;

    fn seeded(seed: u8) -> LicenseSigner {
        LicenseSigner::from_secret_bytes(&[seed; 32])
    }

    fn document(key_id: &str) -> LicenseDocument {
        LicenseDocument {
            format: DOCUMENT_FORMAT,
            feature: "MVTec_HDevelop".into(),
            uuid: "118cf2e7b3d20001".into(),
            version: "26.05".into(),
            edition: "Progress".into(),
            modules: "fc123bdomit".into(),
            host_id: "MAC:2C549188C9E3".into(),
            valid_from: "2025-12-01T08:00:00Z".into(),
            valid_until: "2025-12-01T20:00:00Z".into(),
            borrow_id: "934c1302-1320-42c3-a3ef-6340ff8cd2f3".into(),
            user_info: Some("Jane Doe".into()),
            issued_at: "2025-11-30T12:00:00Z".into(),
            key_id: key_id.into(),
        }
    }

    fn at(text: &str) -> i64 {
        parse_instant(text, DateRole::Start, "now").unwrap()
    }

    #[test]
    fn sign_then_verify_gives_the_document_back() {
        let signer = seeded(7);
        let doc = document(signer.key_id());
        let license = signer.sign(&doc);
        assert!(license.starts_with(LICENSE_PREFIX));
        assert_eq!(verify(&license, &signer.public_key()).unwrap(), doc);
        let (decoded, payload, _) = decode(&license).unwrap();
        assert_eq!(decoded, doc);
        assert_eq!(payload, serde_json::to_vec(&doc).unwrap());
    }

    #[test]
    fn payload_is_compact_json_in_field_order_and_omits_missing_user_info() {
        let signer = seeded(7);
        let mut doc = document(signer.key_id());
        doc.user_info = None;
        let (_, payload, _) = decode(&signer.sign(&doc)).unwrap();
        let text = String::from_utf8(payload).unwrap();
        let expected = format!(
            "{{\"format\":1,\"feature\":\"MVTec_HDevelop\",\"uuid\":\"118cf2e7b3d20001\",\
             \"version\":\"26.05\",\"edition\":\"Progress\",\"modules\":\"fc123bdomit\",\
             \"hostId\":\"MAC:2C549188C9E3\",\"validFrom\":\"2025-12-01T08:00:00Z\",\
             \"validUntil\":\"2025-12-01T20:00:00Z\",\
             \"borrowId\":\"934c1302-1320-42c3-a3ef-6340ff8cd2f3\",\
             \"issuedAt\":\"2025-11-30T12:00:00Z\",\"keyId\":\"{}\"}}",
            signer.key_id()
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn signing_is_deterministic() {
        let doc = document(seeded(7).key_id());
        let first = seeded(7).sign(&doc);
        assert_eq!(first, seeded(7).sign(&doc));
        assert_eq!(first, seeded(7).sign(&doc.clone()));
        assert_ne!(first, seeded(8).sign(&doc));
    }

    #[test]
    fn sign_writes_its_own_key_id() {
        let signer = seeded(7);
        let license = signer.sign(&document("somebody-else"));
        let doc = verify(&license, &signer.public_key()).unwrap();
        assert_eq!(doc.key_id, signer.key_id());
    }

    #[test]
    fn changing_any_single_byte_fails_verification() {
        let signer = seeded(7);
        let key = signer.public_key();
        let license = signer.sign(&document(signer.key_id()));
        let bytes = license.as_bytes();
        for position in 0..bytes.len() {
            // The lowest bit flipped (a neighbouring character), then a set of fixed
            // replacements: letters, digits, the base64url alphabet's extras, separators.
            let mut replacements = vec![bytes[position] ^ 0x01];
            replacements.extend(b"Aa0-_.= ".iter().filter(|&&b| b != bytes[position]));
            for replacement in replacements {
                let mut altered = bytes.to_vec();
                altered[position] = replacement;
                let altered = String::from_utf8(altered).unwrap();
                assert!(
                    verify(&altered, &key).is_err(),
                    "byte {replacement:#04x} at position {position} still verifies"
                );
            }
        }
        // Adding or dropping a byte fails too.
        assert!(verify(&format!("{license}A"), &key).is_err());
        assert!(verify(&license[..license.len() - 1], &key).is_err());
    }

    #[test]
    fn altered_payload_reports_the_signature() {
        let signer = seeded(7);
        let mut doc = document(signer.key_id());
        let license = signer.sign(&doc);
        let signature = license.rsplit('.').next().unwrap();
        doc.valid_until = "2026-12-01T20:00:00Z".into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&doc).unwrap());
        let forged = format!("{LICENSE_PREFIX}{payload}.{signature}");
        let err = verify(&forged, &signer.public_key()).unwrap_err();
        assert!(matches!(err, VerifyError::Signature), "{err:?}");
        assert_eq!(
            err.to_string(),
            "signature does not match: the license was altered or signed by another key"
        );
    }

    #[test]
    fn another_key_fails_and_names_both_keys() {
        let signer = seeded(7);
        let other = seeded(9);
        let license = signer.sign(&document(signer.key_id()));
        match verify(&license, &other.public_key()).unwrap_err() {
            VerifyError::KeyId { license, given } => {
                assert_eq!(license, signer.key_id());
                assert_eq!(given, other.key_id());
            }
            err => panic!("unexpected {err:?}"),
        }
    }

    #[test]
    fn malformed_strings_say_what_is_wrong() {
        type Expect = fn(&VerifyError) -> bool;
        let key = seeded(7).public_key();
        let cases: [(&str, Expect); 6] = [
            ("", |e| matches!(e, VerifyError::Prefix)),
            ("LIC2.abc.def", |e| matches!(e, VerifyError::Prefix)),
            ("LIC1.abc", |e| matches!(e, VerifyError::Shape)),
            ("LIC1.a.b.c", |e| matches!(e, VerifyError::Shape)),
            ("LIC1.ab+c.AAAA", |e| {
                matches!(
                    e,
                    VerifyError::Base64 {
                        part: "payload",
                        ..
                    }
                )
            }),
            ("LIC1.e30.AAAA", |e| {
                matches!(e, VerifyError::SignatureLength(3))
            }),
        ];
        for (text, expected) in cases {
            let err = verify(text, &key).unwrap_err();
            assert!(expected(&err), "{text:?} gave {err:?}");
        }
        let huge = format!("{LICENSE_PREFIX}{}", "A".repeat(MAX_LICENSE_LEN));
        assert!(matches!(
            verify(&huge, &key),
            Err(VerifyError::TooLong { .. })
        ));
    }

    #[test]
    fn unknown_format_is_refused() {
        let signer = seeded(7);
        let mut doc = document(signer.key_id());
        doc.format = 2;
        let err = verify(&signer.sign(&doc), &signer.public_key()).unwrap_err();
        assert!(matches!(err, VerifyError::Format(2)), "{err:?}");
    }

    #[test]
    fn key_id_is_first_eight_public_key_bytes_in_hex() {
        let signer = seeded(7);
        let key = signer.public_key();
        assert_eq!(key.key_id().len(), 16);
        assert_eq!(key.key_id(), signer.key_id());
        let raw = STANDARD.decode(key.to_base64()).unwrap();
        let hex: String = raw[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(key.key_id(), hex);
        assert_ne!(seeded(9).key_id(), signer.key_id());
    }

    #[test]
    fn secret_bytes_round_trip() {
        let signer = LicenseSigner::generate().unwrap();
        let again = LicenseSigner::from_secret_bytes(&signer.secret_bytes());
        assert_eq!(again.public_key(), signer.public_key());
        assert_ne!(LicenseSigner::generate().unwrap().key_id(), signer.key_id());
    }

    #[test]
    fn private_pem_round_trips() {
        let signer = seeded(7);
        let pem = signer.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = LicenseSigner::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again.secret_bytes(), signer.secret_bytes());
        assert!(LicenseSigner::from_pkcs8_pem("not a key").is_err());
        assert!(!format!("{signer:?}").contains(&format!("{:?}", signer.secret_bytes())));
    }

    #[test]
    fn public_pem_and_base64_round_trip() {
        let key = seeded(7).public_key();
        let pem = key.to_pem();
        // The hand-built SPKI is exactly what the generic encoder writes.
        let library = key.key.to_public_key_pem(LineEnding::LF).unwrap();
        assert_eq!(pem, library);
        assert_eq!(PublicKey::from_pem(&pem).unwrap(), key);
        assert_eq!(PublicKey::from_base64(&key.to_base64()).unwrap(), key);
        assert!(
            PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
        assert!(matches!(
            PublicKey::from_base64("AAAA"),
            Err(KeyError::Length(3))
        ));
        assert!(matches!(
            PublicKey::from_base64("!!"),
            Err(KeyError::Base64(_))
        ));
    }

    #[test]
    fn offline_check_accepts_the_right_host_inside_the_window() {
        let doc = document("k");
        assert_eq!(
            check_offline(&doc, Some("MAC:2C549188C9E3"), at("2025-12-01T08:00:00Z")),
            Ok(())
        );
        assert_eq!(
            check_offline(&doc, Some("mac:2c549188c9e3"), at("2025-12-01T19:59:59Z")),
            Ok(())
        );
        assert_eq!(
            check_offline(&doc, None, at("2025-12-01T12:00:00Z")),
            Ok(())
        );
    }

    #[test]
    fn offline_check_refuses_another_host() {
        let err = check_offline(
            &document("k"),
            Some("mac:000000000001"),
            at("2025-12-01T12:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "license is for host MAC:2C549188C9E3 but this machine is MAC:000000000001"
        );
    }

    #[test]
    fn offline_check_window_is_half_open() {
        let doc = document("k");
        let err = check_offline(&doc, None, at("2025-12-01T20:00:00Z")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "license expired at 2025-12-01T20:00:00Z (checked at 2025-12-01T20:00:00Z)"
        );
        let err = check_offline(&doc, None, at("2025-12-01T07:59:59Z")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "license is valid only from 2025-12-01T08:00:00Z (checked at 2025-12-01T07:59:59Z)"
        );
    }

    #[test]
    fn offline_check_reports_a_bad_date() {
        let mut doc = document("k");
        doc.valid_until = "soon".into();
        let err = check_offline(&doc, None, 0).unwrap_err();
        assert!(
            matches!(
                err,
                OfflineCheckError::Date {
                    field: "validUntil",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

//! License strings and their verification: nothing panics, and nothing verifies under the
//! pool's key except the exact string the key signed.
//!
//! Each input is used three ways:
//! 1. as a license string of its own (decoded, verified, checked offline);
//! 2. as edits (replace, insert, delete a byte; cut) applied to a validly signed license,
//!    which must then verify if and only if the edits left it unchanged;
//! 3. if it is a license document in JSON, signed and verified: the document comes back,
//!    and the license with its signature altered does not verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use licensed::borrow::document::{
    check_offline, decode, verify, LicenseDocument, LicenseSigner, PublicKey, VerifyError,
    DOCUMENT_FORMAT,
};

/// A signer, its public key, and one license it signed.
struct Fixture {
    signer: LicenseSigner,
    key: PublicKey,
    license: String,
    document: LicenseDocument,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let signer = LicenseSigner::from_secret_bytes(&[7; 32]);
        let document = LicenseDocument {
            format: DOCUMENT_FORMAT,
            feature: "MVTec_HDevelop".into(),
            uuid: "118cf2e7b3d20001".into(),
            version: "26.05".into(),
            edition: "Progress".into(),
            modules: "fc123bdomit".into(),
            host_id: "MAC:2C549188C9E3".into(),
            valid_from: "2026-12-01T08:00:00Z".into(),
            valid_until: "2026-12-01T20:00:00Z".into(),
            borrow_id: "934c1302-1320-42c3-a3ef-6340ff8cd2f3".into(),
            user_info: Some("Jane Doe".into()),
            issued_at: "2026-12-01T08:00:00Z".into(),
            key_id: signer.key_id().to_string(),
        };
        let license = signer.sign(&document);
        Fixture {
            key: signer.public_key(),
            signer,
            license,
            document,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    if let Ok(text) = std::str::from_utf8(data) {
        as_license(fixture, text);
        as_document(fixture, text);
    }
    as_edits(fixture, data);
});

fn as_license(fixture: &Fixture, text: &str) {
    if let Ok((document, _payload, _signature)) = decode(text) {
        for host in [
            None,
            Some(document.host_id.as_str()),
            Some("MAC:000000000000"),
        ] {
            for now in [i64::MIN, -1, 0, 1_796_112_000, i64::MAX] {
                let _ = check_offline(&document, host, now);
            }
        }
    }
    if let Ok(document) = verify(text, &fixture.key) {
        assert_eq!(
            text, fixture.license,
            "a string the key never signed verifies"
        );
        assert_eq!(document, fixture.document);
    }
}

fn as_edits(fixture: &Fixture, data: &[u8]) {
    let mut bytes = fixture.license.as_bytes().to_vec();
    for edit in data.chunks(4) {
        let &[op, hi, lo, value] = edit else {
            break;
        };
        let at = usize::from(u16::from_be_bytes([hi, lo])) % (bytes.len() + 1);
        match op % 4 {
            0 if at < bytes.len() => bytes[at] = value,
            1 => bytes.insert(at, value),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 => bytes.truncate(at),
            _ => {}
        }
    }
    let Ok(edited) = String::from_utf8(bytes) else {
        return;
    };
    match verify(&edited, &fixture.key) {
        Ok(document) => {
            assert_eq!(edited, fixture.license, "an altered license verifies");
            assert_eq!(document, fixture.document);
        }
        Err(refused) => assert_ne!(edited, fixture.license, "the signed license: {refused}"),
    }
}

fn as_document(fixture: &Fixture, text: &str) {
    let Ok(document) = serde_json::from_str::<LicenseDocument>(text) else {
        return;
    };
    let license = fixture.signer.sign(&document);
    // The signer names its own key, whatever the document said.
    let expected = LicenseDocument {
        key_id: fixture.signer.key_id().to_string(),
        ..document
    };
    if expected.format == DOCUMENT_FORMAT {
        let verified = verify(&license, &fixture.key).expect("a signed license verifies");
        assert_eq!(verified, expected);
        let (decoded, _, _) = decode(&license).expect("and decodes");
        assert_eq!(decoded, expected);
    } else {
        // A layout this code does not read is refused, signed or not.
        assert!(matches!(
            verify(&license, &fixture.key),
            Err(VerifyError::Format(_))
        ));
        assert!(matches!(decode(&license), Err(VerifyError::Format(_))));
    }
    // Any change to the signature: refused.
    let mut altered = license.into_bytes();
    if let Some(last) = altered.last_mut() {
        *last = if *last == b'A' { b'Q' } else { b'A' };
    }
    let altered = String::from_utf8(altered).expect("base64 is ASCII");
    assert!(verify(&altered, &fixture.key).is_err(), "{altered}");
}

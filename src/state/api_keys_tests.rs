//! Client API keys in the ledger: created and revoked through the log, checked again when
//! a write made with a key is applied, and kept by snapshots.

use uuid::Uuid;

use super::api_key::{ApiKeyText, KeyId, KeySecret, Scope};
use super::api_keys::{ApiKeyChange, KeyRefusal, NewApiKey};
use super::ledger::{Ledger, LedgerSnapshot, DEFAULT_RETENTION_SECS};
use super::{Bootstrap, BorrowRecord, Command, Outcome};
use crate::borrow::check::BorrowRequest;
use crate::borrow::host_id::HostId;
use crate::borrow::license::{License, LicenseKey};
use crate::borrow::time::UnixSeconds;

const NOW: UnixSeconds = 1_800_000_000;
const HOUR: i64 = 3_600;
const HALCON: &str = "MVTec_HALCON";
const HDEVELOP: &str = "MVTec_HDevelop";

fn license_key(feature: &str) -> LicenseKey {
    LicenseKey {
        feature: feature.into(),
        uuid: "u1".into(),
    }
}

/// A ledger with one license of each feature, 5 seats each.
fn ledger() -> Ledger {
    let license = |feature| License {
        key: license_key(feature),
        version: "26.05".into(),
        edition: "Steady".into(),
        modules: "fc".into(),
        count: 5,
        valid_from: None,
        valid_until: None,
        max_borrow_secs: None,
        max_borrowed: None,
        max_per_host: None,
    };
    let mut ledger = Ledger::default();
    ledger.apply(&Command::Bootstrap(Box::new(Bootstrap {
        licenses: vec![license(HALCON), license(HDEVELOP)],
        max_borrow_secs: 30 * 86_400,
        retention_secs: DEFAULT_RETENTION_SECS,
        signing_key: [7; 32],
        audit_retention_secs: 90 * 86_400,
        max_audit_entries: 100_000,
        created_at: 0,
    })));
    ledger
}

fn create_key(ledger: &mut Ledger, id: u64, scope: Scope, features: Option<&[&str]>) -> ApiKeyText {
    let text = ApiKeyText::new(KeyId::from_u64(id), KeySecret::from_bytes([id as u8; 32]));
    let outcome = ledger.apply(&Command::ApiKey {
        now: NOW,
        change: ApiKeyChange::Create(NewApiKey {
            id: text.id(),
            name: format!("the {scope} key"),
            scope,
            features: features.map(|f| f.iter().map(|s| s.to_string()).collect()),
            secret_hash: text.secret().hash(),
        }),
    });
    assert!(matches!(outcome, Outcome::ApiKey(Ok(_))), "{outcome:?}");
    text
}

fn revoke(ledger: &mut Ledger, id: KeyId, now: UnixSeconds) {
    let outcome = ledger.apply(&Command::ApiKey {
        now,
        change: ApiKeyChange::Revoke(id),
    });
    assert!(matches!(outcome, Outcome::ApiKey(Ok(_))), "{outcome:?}");
}

fn borrow(feature: &str, now: UnixSeconds) -> Command {
    Command::Borrow {
        now,
        borrow_id: Uuid::new_v4(),
        request: BorrowRequest {
            key: license_key(feature),
            host_id: HostId::parse("MAC:2C549188C9E3").expect("host id"),
            valid_from: Some(now),
            valid_until: Some(now + HOUR),
            user_info: None,
        },
        request_id: None,
    }
}

fn with_key(key: &ApiKeyText, command: Command) -> Command {
    Command::AsKey {
        key_id: key.id(),
        command: Box::new(command),
    }
}

fn granted(outcome: Outcome) -> BorrowRecord {
    match outcome {
        Outcome::Borrow(Ok(record)) => *record,
        other => panic!("expected a granted borrow, got {other:?}"),
    }
}

fn refused(outcome: Outcome) -> KeyRefusal {
    match outcome {
        Outcome::KeyRefused(refusal) => refusal,
        other => panic!("expected a key refusal, got {other:?}"),
    }
}

#[test]
fn a_write_with_a_key_revoked_earlier_in_the_log_is_refused_and_changes_nothing() {
    let mut ledger = ledger();
    let key = create_key(&mut ledger, 1, Scope::Borrow, None);
    let record = granted(ledger.apply(&with_key(&key, borrow(HALCON, NOW))));

    revoke(&mut ledger, key.id(), NOW + 1);
    let before = ledger.to_snapshot();
    // Both requests passed the check on the node they reached before the revocation was
    // applied there; their entries come after it in the log.
    let late_borrow = refused(ledger.apply(&with_key(&key, borrow(HALCON, NOW + 2))));
    assert_eq!(
        late_borrow,
        KeyRefusal::Revoked {
            id: key.id(),
            at: NOW + 1
        }
    );
    let late_return = ledger.apply(&with_key(
        &key,
        Command::Return {
            now: NOW + 2,
            borrow_id: record.borrow_id,
        },
    ));
    assert!(matches!(
        late_return,
        Outcome::KeyRefused(KeyRefusal::Revoked { .. })
    ));
    // Nothing changed, not even the clock.
    assert_eq!(ledger.to_snapshot(), before);
    // The same entry without a key is no business of the keys.
    granted(ledger.apply(&borrow(HALCON, NOW + 2)));
}

#[test]
fn a_key_that_never_existed_writes_nothing() {
    let mut ledger = ledger();
    let stranger = ApiKeyText::new(KeyId::from_u64(42), KeySecret::from_bytes([1; 32]));
    assert_eq!(
        refused(ledger.apply(&with_key(&stranger, borrow(HALCON, NOW)))),
        KeyRefusal::Invalid(stranger.id())
    );
    assert_eq!(ledger.borrow_count(), 0);
}

#[test]
fn apply_holds_keys_to_their_scope_and_features() {
    let mut ledger = ledger();
    let reader = create_key(&mut ledger, 1, Scope::Read, None);
    let halcon_only = create_key(&mut ledger, 2, Scope::Borrow, Some(&[HALCON]));
    let admin = create_key(&mut ledger, 3, Scope::Admin, None);

    assert!(matches!(
        refused(ledger.apply(&with_key(&reader, borrow(HALCON, NOW)))),
        KeyRefusal::Scope {
            needs: Scope::Borrow,
            ..
        }
    ));
    let theirs = granted(ledger.apply(&borrow(HDEVELOP, NOW)));
    assert!(matches!(
        refused(ledger.apply(&with_key(&halcon_only, borrow(HDEVELOP, NOW)))),
        KeyRefusal::Feature { feature, .. } if feature == HDEVELOP
    ));
    // A return is checked against the feature of the borrow it names.
    let give_back = |id| Command::Return {
        now: NOW + 1,
        borrow_id: id,
    };
    assert!(matches!(
        refused(ledger.apply(&with_key(&halcon_only, give_back(theirs.borrow_id)))),
        KeyRefusal::Feature { .. }
    ));
    let mine = granted(ledger.apply(&with_key(&halcon_only, borrow(HALCON, NOW))));
    assert!(matches!(
        ledger.apply(&with_key(&halcon_only, give_back(mine.borrow_id))),
        Outcome::Returned(Ok(_))
    ));
    // An unknown borrow has no feature: the return itself answers "no such borrow".
    assert!(matches!(
        ledger.apply(&with_key(&halcon_only, give_back(Uuid::new_v4()))),
        Outcome::Returned(Err(_))
    ));

    // Only an admin key manages keys; no key carries a bootstrap.
    let revoke_reader = Command::ApiKey {
        now: NOW + 2,
        change: ApiKeyChange::Revoke(reader.id()),
    };
    assert!(matches!(
        refused(ledger.apply(&with_key(&halcon_only, revoke_reader.clone()))),
        KeyRefusal::Scope {
            needs: Scope::Admin,
            ..
        }
    ));
    assert!(ledger.api_keys().authenticate(&reader).is_ok());
    assert!(matches!(
        ledger.apply(&with_key(&admin, revoke_reader)),
        Outcome::ApiKey(Ok(record)) if record.revoked_at == Some(NOW + 2)
    ));
    assert!(ledger.api_keys().authenticate(&reader).is_err());
    let bootstrap = Command::Bootstrap(Box::new(Bootstrap {
        licenses: vec![],
        max_borrow_secs: 1,
        retention_secs: 1,
        signing_key: [0; 32],
        audit_retention_secs: 90 * 86_400,
        max_audit_entries: 100_000,
        created_at: 0,
    }));
    assert!(matches!(
        refused(ledger.apply(&with_key(&admin, bootstrap))),
        KeyRefusal::NotForKeys(_)
    ));
}

/// What a snapshot file holds: the borrowed view, encoded as the state machine does.
fn through_a_snapshot_file(ledger: &Ledger) -> Ledger {
    let config = bincode::config::standard();
    let mut frozen = ledger.freeze();
    let bytes = bincode::serde::encode_to_vec(frozen.view(), config).expect("encodes");
    let (snapshot, read): (LedgerSnapshot, usize) =
        bincode::serde::decode_from_slice(&bytes, config).expect("decodes");
    assert_eq!(read, bytes.len());
    Ledger::from_snapshot(snapshot)
}

#[test]
fn api_keys_survive_a_snapshot_and_its_restore() {
    let mut ledger = ledger();
    let kept = create_key(&mut ledger, 1, Scope::Borrow, Some(&[HALCON]));
    let gone = create_key(&mut ledger, 2, Scope::Admin, None);
    revoke(&mut ledger, gone.id(), NOW + 10);

    let mut restored = through_a_snapshot_file(&ledger);
    let snapshot = ledger.to_snapshot();
    assert_eq!(restored.to_snapshot(), snapshot);
    assert_eq!(snapshot.api_keys.len(), 2);

    // The kept key authenticates with its secret (only the hash was stored), keeps its
    // scope and features, and writes; the revoked one stays revoked.
    let record = restored.api_keys().authenticate(&kept).expect("kept key");
    assert_eq!(record.name, "the borrow key");
    assert_eq!(record.features.as_deref(), Some(&[HALCON.to_string()][..]));
    granted(restored.apply(&with_key(&kept, borrow(HALCON, NOW + 20))));
    assert!(matches!(
        refused(restored.apply(&with_key(&kept, borrow(HDEVELOP, NOW + 20)))),
        KeyRefusal::Feature { .. }
    ));
    assert!(matches!(
        restored.api_keys().authenticate(&gone),
        Err(KeyRefusal::Revoked { at, .. }) if at == NOW + 10
    ));
    assert!(matches!(
        refused(restored.apply(&with_key(&gone, borrow(HALCON, NOW + 20)))),
        KeyRefusal::Revoked { .. }
    ));

    // The revoked key is forgotten at the same instant on a restored ledger as on one
    // that applied every entry.
    let forget_at = NOW + 10 + DEFAULT_RETENTION_SECS;
    for ledger in [&mut ledger, &mut restored] {
        ledger.apply(&borrow(HALCON, forget_at - 1));
        assert!(ledger.api_keys().get(gone.id()).is_some());
        ledger.apply(&borrow(HALCON, forget_at));
        assert!(ledger.api_keys().get(gone.id()).is_none());
        assert!(ledger.api_keys().get(kept.id()).is_some());
    }
}

#[test]
fn a_snapshot_being_written_keeps_the_keys_of_its_moment() {
    let mut ledger = ledger();
    let key = create_key(&mut ledger, 1, Scope::Read, None);
    let frozen = ledger.freeze();
    revoke(&mut ledger, key.id(), NOW + 1);
    create_key(&mut ledger, 2, Scope::Read, None);
    let then = frozen.into_snapshot();
    assert_eq!(then.api_keys.len(), 1);
    assert_eq!(then.api_keys[0].revoked_at, None);
    assert_eq!(ledger.to_snapshot().api_keys[0].revoked_at, Some(NOW + 1));
}

#[test]
fn log_lines_of_key_commands_show_ids_never_names_or_secrets() {
    let key = ApiKeyText::new(KeyId::from_u64(0xbeef), KeySecret::from_bytes([0x5a; 32]));
    let create = Command::ApiKey {
        now: NOW,
        change: ApiKeyChange::Create(NewApiKey {
            id: key.id(),
            name: "Jane's laptop".into(),
            scope: Scope::Borrow,
            features: None,
            secret_hash: key.secret().hash(),
        }),
    };
    let keyed = with_key(&key, borrow(HALCON, NOW));
    assert_eq!(
        create.to_string(),
        format!("create-api-key(000000000000beef scope borrow at {NOW})")
    );
    assert!(
        keyed.to_string().ends_with("with api key 000000000000beef"),
        "{keyed}"
    );
    let secret_text = &key.expose()[20..];
    for line in [
        create.to_string(),
        keyed.to_string(),
        format!("{create:?}"),
        format!("{keyed:?}"),
    ] {
        assert!(!line.contains(secret_text), "{line}");
        assert!(!line.contains("90, 90"), "{line}");
    }
    assert!(!create.to_string().contains("Jane"));
    assert!(matches!(keyed.unkeyed(), Command::Borrow { .. }));
}

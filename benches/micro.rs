//! criterion micro-benchmarks of the request path's pure parts: the state machine's apply
//! of one borrow (ledger of 10 000 borrows), JSON-RPC decoding of a borrow request and
//! encoding of its answer, and signing of a borrowed license.
//! Run: `cargo bench --profile dev --bench micro`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use licensed::app::document_for;
use licensed::borrow::check::BorrowRequest;
use licensed::borrow::document::LicenseSigner;
use licensed::borrow::host_id::HostId;
use licensed::borrow::license::{License, LicenseKey};
use licensed::rpc::methods::decode_borrow;
use licensed::rpc::params::Params;
use licensed::state::{Bootstrap, Command, Ledger, Outcome};
use serde_json::{json, Value};
use uuid::Uuid;

const NOW: i64 = 1_800_000_000;
const HOUR: i64 = 3_600;

fn key() -> LicenseKey {
    LicenseKey {
        feature: "MVTec_HALCON".into(),
        uuid: "bench".into(),
    }
}

fn ledger_with(borrows: usize) -> Ledger {
    let mut ledger = Ledger::default();
    ledger.apply(&Command::Bootstrap(Box::new(Bootstrap {
        licenses: vec![License {
            key: key(),
            version: "26.05".into(),
            edition: "Steady".into(),
            modules: "fc".into(),
            count: 100_000_000,
            valid_from: None,
            valid_until: None,
            max_borrow_secs: None,
            max_borrowed: None,
            max_per_host: None,
        }],
        max_borrow_secs: 30 * 86_400,
        retention_secs: 30 * 86_400,
        signing_key: [7; 32],
        audit_retention_secs: 90 * 86_400,
        max_audit_entries: 100_000,
        created_at: 0,
    })));
    for i in 0..borrows {
        let from = NOW + (i as i64 % 1_000) * HOUR;
        ledger.apply(&borrow_command(from, None));
    }
    ledger
}

fn borrow_command(from: i64, request_id: Option<String>) -> Command {
    Command::Borrow {
        now: NOW,
        borrow_id: Uuid::new_v4(),
        request: BorrowRequest {
            key: key(),
            host_id: HostId::parse("MAC:2C549188C9E3").expect("host id"),
            valid_from: Some(from),
            valid_until: Some(from + 8 * HOUR),
            user_info: Some("Jane Doe".into()),
        },
        request_id,
    }
}

fn apply(c: &mut Criterion) {
    let mut ledger = ledger_with(10_000);
    let mut i = 0i64;
    c.bench_function("apply_borrow_10k_ledger", |b| {
        b.iter(|| {
            i += 1;
            let outcome = ledger.apply(&borrow_command(NOW + (i % 1_000) * HOUR, None));
            black_box(matches!(outcome, Outcome::Borrow(Ok(_))))
        })
    });
    let mut n = 0u64;
    c.bench_function("apply_borrow_with_request_id", |b| {
        b.iter(|| {
            n += 1;
            let command = borrow_command(NOW + (n as i64 % 1_000) * HOUR, Some(format!("r{n}")));
            black_box(ledger.apply(&command))
        })
    });
}

fn rpc(c: &mut Criterion) {
    let body = json!({"jsonrpc":"2.0","method":"BorrowLicenseV1","id":17,"params":{
        "feature":"MVTec_HALCON","uuid":"bench","hostId":"MAC:2C549188C9E3",
        "validFrom":"2027-03-01T08:00:00Z","validUntil":"2027-03-01T20:00:00Z",
        "userInfo":"Jane Doe"}})
    .to_string();
    c.bench_function("rpc_decode_borrow", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_str(black_box(&body)).expect("json");
            let params = Params::new("BorrowLicenseV1", value.get("params")).expect("params");
            black_box(decode_borrow(&params).expect("decoded"))
        })
    });
    let answer = json!({"jsonrpc":"2.0","id":17,"result":{
        "license": "LIC1.".to_string() + &"x".repeat(400),
        "borrowId":"934c1302-1320-42c3-a3ef-6340ff8cd2f3"}});
    c.bench_function("rpc_encode_answer", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&answer)).expect("encoded")))
    });
}

fn signing(c: &mut Criterion) {
    let mut ledger = ledger_with(1);
    let Outcome::Borrow(Ok(record)) = ledger.apply(&borrow_command(NOW, None)) else {
        panic!("borrow refused");
    };
    let signer = LicenseSigner::from_secret_bytes(&[7; 32]);
    let document = document_for(&record, signer.key_id());
    c.bench_function("sign_license", |b| {
        b.iter(|| black_box(signer.sign(black_box(&document))))
    });
}

criterion_group! {
    name = micro;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = apply, rpc, signing
}
criterion_main!(micro);

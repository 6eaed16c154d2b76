//! The pool file parser: any text is accepted or refused without a panic, and an accepted
//! pool keeps the parser's promises — every license valid (known feature and edition,
//! identifiers, module order, `validUntil` after `validFrom`, positive borrow limits),
//! unique by feature and uuid, a positive pool-wide limit — and reads back the same when
//! written out again in the pool format.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use licensed::borrow::license::License;
use licensed::borrow::pool::{parse_pool, Pool};
use licensed::borrow::time::format_instant;
use serde_json::{json, Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let pool = match parse_pool(text) {
        Ok(pool) => pool,
        Err(_) => return,
    };
    assert!(pool.max_borrow_secs > 0, "{pool:?}");
    let mut keys = BTreeSet::new();
    for license in &pool.licenses {
        assert_eq!(license.validate(), Ok(()), "{license:?}");
        assert!(keys.insert(&license.key), "duplicate {:?}", license.key);
        if let Some(max) = license.max_borrow_secs {
            assert!(max > 0, "{license:?}");
        }
        if let (Some(from), Some(until)) = (license.valid_from, license.valid_until) {
            assert!(from < until, "{license:?}");
        }
    }
    let written = write_pool(&pool);
    match parse_pool(&written) {
        Ok(again) => assert_eq!(again, pool, "{written}"),
        Err(e) => panic!("the pool written back is refused ({e}): {written}"),
    }
});

/// The pool in the file format: dates in the form the server writes, limits in seconds.
fn write_pool(pool: &Pool) -> String {
    let licenses: Vec<Value> = pool.licenses.iter().map(write_license).collect();
    json!({
        "maxBorrowDuration": format!("{}s", pool.max_borrow_secs),
        "licenses": licenses,
    })
    .to_string()
}

fn write_license(license: &License) -> Value {
    let mut entry = Map::new();
    entry.insert("feature".into(), license.key.feature.clone().into());
    entry.insert("uuid".into(), license.key.uuid.clone().into());
    entry.insert("version".into(), license.version.clone().into());
    entry.insert("edition".into(), license.edition.clone().into());
    entry.insert("modules".into(), license.modules.clone().into());
    entry.insert("count".into(), license.count.into());
    if let Some(from) = license.valid_from {
        entry.insert("validFrom".into(), format_instant(from).into());
    }
    if let Some(until) = license.valid_until {
        entry.insert("validUntil".into(), format_instant(until).into());
    }
    if let Some(max) = license.max_borrow_secs {
        entry.insert("maxBorrowDuration".into(), format!("{max}s").into());
    }
    Value::Object(entry)
}

//! The wire's date and host-id grammars: any text is parsed or refused without a panic,
//! refusals have bounded messages, and whatever parses round-trips through the one form
//! the server writes (a date as RFC 3339 UTC with `Z` and whole seconds, a host id in its
//! canonical upper-case form).
#![no_main]

use libfuzzer_sys::fuzz_target;
use licensed::borrow::host_id::HostId;
use licensed::borrow::time::{format_instant, parse_instant, DateRole};

/// Longest refusal message: the given text is cut to 64 bytes in it, each escaped in at
/// most 6 characters (`\u{14}`).
const MAX_MESSAGE: usize = 1_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_date(text);
    check_host_id(text);
});

fn check_date(text: &str) {
    for role in [DateRole::Start, DateRole::End] {
        let instant = match parse_instant(text, role, "validFrom") {
            Ok(instant) => instant,
            Err(refused) => {
                assert!(refused.to_string().len() < MAX_MESSAGE, "{refused}");
                continue;
            }
        };
        let written = format_instant(instant);
        // `YYYY-MM-DDTHH:MM:SSZ`: what every client reads.
        let shape = written.len() == 20
            && written.ends_with('Z')
            && written.bytes().enumerate().all(|(at, b)| match at {
                4 | 7 => b == b'-',
                10 => b == b'T',
                13 | 16 => b == b':',
                19 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        assert!(shape, "{text:?} ({role:?}) is written as {written:?}");
        for again in [DateRole::Start, DateRole::End] {
            assert_eq!(
                parse_instant(&written, again, "validFrom"),
                Ok(instant),
                "{text:?} ({role:?}) is written as {written:?}"
            );
        }
    }
}

fn check_host_id(text: &str) {
    let id = match HostId::parse(text) {
        Ok(id) => id,
        Err(refused) => {
            assert!(refused.to_string().len() < MAX_MESSAGE, "{refused}");
            // Case never decides: the lower-case form is refused too.
            assert!(
                HostId::parse(&text.to_ascii_lowercase()).is_err(),
                "{text:?}"
            );
            return;
        }
    };
    assert_eq!(id.as_str(), text.to_ascii_uppercase(), "{text:?}");
    assert_eq!(HostId::parse(id.as_str()).as_ref(), Ok(&id));
    assert_eq!(HostId::parse(&text.to_ascii_lowercase()).as_ref(), Ok(&id));
    assert_eq!(id.to_string(), id.as_str());
    // The serde form (ledger, snapshots, log) is the canonical text.
    let json = serde_json::to_string(&id).expect("a host id serialises");
    assert_eq!(json, format!("{:?}", id.as_str()));
    let back: HostId = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(back, id);
}

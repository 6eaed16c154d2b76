//! Signed license strings by borrow, so that `GetBorrowedLicenseV1` does not sign again
//! on every read. Ed25519 signatures are deterministic and a borrow's document changes
//! only when a return shortens its end, so a cached string is byte for byte what signing
//! the record again would give.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use crate::borrow::time::UnixSeconds;

/// Entries kept before the cache starts over (about 50 MB of license strings).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Signed licenses keyed by (borrow id, end of the borrow).
#[derive(Debug)]
pub struct SignedCache {
    entries: Mutex<HashMap<(Uuid, UnixSeconds), String>>,
    capacity: usize,
}

impl SignedCache {
    /// An empty cache holding at most `capacity` licenses.
    pub fn new(capacity: usize) -> SignedCache {
        SignedCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The license for (`borrow_id`, `valid_until`), signed by `sign` on a miss.
    pub fn get_or_sign(
        &self,
        borrow_id: Uuid,
        valid_until: UnixSeconds,
        sign: impl FnOnce() -> String,
    ) -> String {
        let key = (borrow_id, valid_until);
        if let Some(hit) = self.lock().get(&key) {
            return hit.clone();
        }
        // Sign outside the lock: it is the expensive part.
        let license = sign();
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            // Starting over is simpler than an LRU and keeps the bound; reads refill it.
            entries.clear();
        }
        entries.insert(key, license.clone());
        license
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, UnixSeconds), String>> {
        // A panic while holding the lock cannot leave a half-written entry behind.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn a_hit_does_not_sign_and_a_new_end_does() {
        let cache = SignedCache::new(10);
        let id = Uuid::new_v4();
        let signed = Cell::new(0);
        let sign = |text: &str| {
            signed.set(signed.get() + 1);
            text.to_string()
        };
        assert_eq!(cache.get_or_sign(id, 100, || sign("a")), "a");
        assert_eq!(cache.get_or_sign(id, 100, || sign("other")), "a");
        assert_eq!(signed.get(), 1);
        // A return moved the end: the document differs, so it is signed again.
        assert_eq!(cache.get_or_sign(id, 50, || sign("b")), "b");
        assert_eq!(signed.get(), 2);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = SignedCache::new(3);
        for i in 0..10 {
            cache.get_or_sign(Uuid::new_v4(), i, || format!("l{i}"));
            assert!(cache.lock().len() <= 3);
        }
    }
}

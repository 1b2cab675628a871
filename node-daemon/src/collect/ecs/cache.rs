//! A value (or a failure message) with the instant after which it is fetched again.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(super) struct Cached<T> {
    pub(crate) value: T,
    until: Instant,
}

impl<T> Cached<T> {
    pub(crate) fn new(value: T, now: Instant, ttl: Duration) -> Self {
        // A TTL too large for `Instant` means "for the life of the daemon".
        let until = now
            .checked_add(ttl)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        Self { value, until }
    }

    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        now < self.until
    }
}

/// The cached value when it is still fresh.
pub(super) fn fresh<T>(cached: &Option<Cached<T>>, now: Instant) -> Option<&T> {
    cached
        .as_ref()
        .filter(|c| c.is_fresh(now))
        .map(|c| &c.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_until_the_ttl_has_passed() {
        let now = Instant::now();
        let cached = Some(Cached::new(7, now, Duration::from_secs(30)));
        assert_eq!(fresh(&cached, now), Some(&7));
        assert_eq!(fresh(&cached, now + Duration::from_secs(29)), Some(&7));
        assert_eq!(fresh(&cached, now + Duration::from_secs(30)), None);
        assert_eq!(fresh(&None::<Cached<u8>>, now), None);
        // A zero TTL is never fresh: every refresh asks again.
        assert!(!Cached::new((), now, Duration::ZERO).is_fresh(now));
        assert!(Cached::new((), now, Duration::MAX).is_fresh(now + Duration::from_secs(1)));
    }
}

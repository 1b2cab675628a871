//! Locks that keep working after a panic. A thread that panics while holding one of the
//! daemon's locks leaves counters, caches or queues behind that stay usable (every update
//! under a lock is whole or not begun, or starts afresh the next time), so the guard is
//! taken back from the poison instead of spreading the panic to every later caller.

use std::sync::{LockResult, PoisonError};

/// The guard of `Mutex::lock`, `RwLock::read` or `RwLock::write`, poisoned or not.
pub(crate) trait IgnorePoison<G> {
    fn ignore_poison(self) -> G;
}

impl<G> IgnorePoison<G> for LockResult<G> {
    fn ignore_poison(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, RwLock};

    #[test]
    fn a_lock_poisoned_by_a_panic_still_gives_its_value() {
        let mutex = Mutex::new(1);
        let rw = RwLock::new(2);
        let _ = std::panic::catch_unwind(|| {
            let _m = mutex.lock().unwrap();
            let _w = rw.write().unwrap();
            panic!("while holding both");
        });
        assert!(mutex.is_poisoned() && rw.is_poisoned());
        *mutex.lock().ignore_poison() += 1;
        assert_eq!(*mutex.lock().ignore_poison(), 2);
        *rw.write().ignore_poison() += 1;
        assert_eq!(*rw.read().ignore_poison(), 3);
    }
}

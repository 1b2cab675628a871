//! The calling thread's CPU time (user and system), to the nanosecond: what the
//! benchmarks measure with (the machine may be busy, and wall time would count waiting;
//! `getrusage` counts in scheduler ticks).

use std::time::Duration;

pub fn thread_cpu() -> Duration {
    // SAFETY: timespec is plain data; all-zero bytes are a valid value.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_work_done_on_this_thread_only() {
        // Busy for at least 5 ms of CPU (bounded in wall time, should the clock not move).
        let (start, wall) = (thread_cpu(), std::time::Instant::now());
        let mut x = 1u64;
        while thread_cpu() - start < Duration::from_millis(5)
            && wall.elapsed() < Duration::from_secs(5)
        {
            x = std::hint::black_box(x.wrapping_mul(3));
        }
        assert!(thread_cpu() - start >= Duration::from_millis(5));
        // A sleeping thread uses no CPU.
        let before_sleep = thread_cpu();
        std::thread::sleep(Duration::from_millis(50));
        assert!(thread_cpu() - before_sleep < Duration::from_millis(5));
    }
}

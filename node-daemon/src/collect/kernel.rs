//! Constants of the running kernel that the /proc parsers need.

use std::io;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernel {
    /// Clock ticks per second (`_SC_CLK_TCK`), the unit of /proc CPU times.
    pub(crate) clk_tck: u64,
    pub(crate) page_size: u64,
    /// Boot time, Unix seconds (`btime` of /proc/stat).
    pub(crate) boot_time_s: u64,
}

impl Kernel {
    pub(crate) fn read() -> io::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let boot_time_s = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat has no btime"))?;
        Ok(Self {
            clk_tck: sysconf(libc::_SC_CLK_TCK).unwrap_or(100),
            page_size: sysconf(libc::_SC_PAGESIZE).unwrap_or(4096),
            boot_time_s,
        })
    }

    /// Unix milliseconds at which a process started, from its `starttime` in ticks;
    /// the same arithmetic as psutil's `create_time()`.
    pub(crate) fn create_time_ms(&self, starttime_ticks: u64) -> u64 {
        self.boot_time_s * 1000 + starttime_ticks * 1000 / self.clk_tck
    }

    pub(crate) fn ticks_to_seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.clk_tck as f64
    }
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_kernel() {
        let k = Kernel::read().unwrap();
        assert!(k.clk_tck >= 100);
        assert!(k.page_size >= 4096);
        assert!(k.boot_time_s > 1_600_000_000);
        assert_eq!(k.create_time_ms(k.clk_tck * 2), k.boot_time_s * 1000 + 2000);
    }
}

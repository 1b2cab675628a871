//! Which processes are reported: the blacklist and the inclusions that re-admit
//! blacklisted processes with a high resource usage.
//!
//! Semantics (also in docs/COLLECTION.md):
//! 1. A process whose command line (arguments joined by single spaces; the process name
//!    when the command line is empty) matches any pattern is blacklisted.
//! 2. A blacklisted process is still reported when it is among the N heaviest processes
//!    of the host by CPU %, IO read rate, IO write rate or resident memory (ranked over all
//!    processes, blacklisted or not; only processes with a non-zero figure qualify), or
//!    when its CPU % exceeds the CPU threshold (percent of one CPU) or its resident memory
//!    exceeds the memory threshold (percent of host memory).

use regex::RegexSet;

use crate::config::BlacklistConfig;

/// The figures the inclusion rules rank by, per process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    pub(crate) cpu_pct: f64,
    pub(crate) rss_bytes: u64,
    pub(crate) read_bytes_per_sec: f64,
    pub(crate) write_bytes_per_sec: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Blacklist {
    patterns: RegexSet,
    config: BlacklistConfig,
}

impl Blacklist {
    pub(crate) fn new(config: &BlacklistConfig) -> Self {
        let patterns = RegexSet::new(config.patterns.iter().map(|r| r.as_str()))
            .expect("patterns were each validated at configuration");
        Self {
            patterns,
            config: config.clone(),
        }
    }

    pub(crate) fn is_blacklisted(&self, command_line: &str) -> bool {
        self.patterns.is_match(command_line)
    }

    /// Returns, for each process, whether it is reported. `blacklisted[i]` and `usage[i]`
    /// describe the same process.
    pub(crate) fn select(
        &self,
        blacklisted: &[bool],
        usage: &[Usage],
        mem_total_bytes: u64,
    ) -> Vec<bool> {
        let mut keep: Vec<bool> = blacklisted.iter().map(|b| !b).collect();
        if keep.iter().all(|k| *k) {
            return keep;
        }
        let c = &self.config;
        mark_top(&mut keep, usage, c.top_cpu, |u| u.cpu_pct);
        mark_top(&mut keep, usage, c.top_mem, |u| u.rss_bytes as f64);
        mark_top(&mut keep, usage, c.top_io_read, |u| u.read_bytes_per_sec);
        mark_top(&mut keep, usage, c.top_io_write, |u| u.write_bytes_per_sec);
        for (kept, u) in keep.iter_mut().zip(usage) {
            let over_cpu = c.cpu_threshold.is_some_and(|t| u.cpu_pct > t);
            let over_mem = c.mem_threshold.is_some_and(|t| {
                mem_total_bytes > 0 && u.rss_bytes as f64 * 100.0 / mem_total_bytes as f64 > t
            });
            *kept |= over_cpu || over_mem;
        }
        keep
    }
}

fn mark_top(keep: &mut [bool], usage: &[Usage], n: usize, measure: impl Fn(&Usage) -> f64) {
    if n == 0 {
        return;
    }
    let mut ranked: Vec<(f64, usize)> = usage
        .iter()
        .enumerate()
        .map(|(i, u)| (measure(u), i))
        .filter(|(m, _)| *m > 0.0)
        .collect();
    if ranked.len() > n {
        ranked.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
        ranked.truncate(n);
    }
    for (_, i) in ranked {
        keep[i] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn blacklist(patterns: &[&str], tune: impl FnOnce(&mut BlacklistConfig)) -> Blacklist {
        let mut config = BlacklistConfig {
            patterns: patterns.iter().map(|p| Regex::new(p).unwrap()).collect(),
            ..BlacklistConfig::default()
        };
        tune(&mut config);
        Blacklist::new(&config)
    }

    fn cpu(pct: f64) -> Usage {
        Usage {
            cpu_pct: pct,
            ..Usage::default()
        }
    }

    #[test]
    fn patterns_match_the_command_line() {
        let b = blacklist(&["^sleep", "^/usr/sbin/.*"], |_| {});
        assert!(b.is_blacklisted("sleep 100"));
        assert!(b.is_blacklisted("/usr/sbin/cron -f"));
        assert!(!b.is_blacklisted("/usr/bin/java -jar app.jar"));
        assert!(!b.is_blacklisted("python3 sleep.py"));
    }

    #[test]
    fn default_list_blacklists_shells_and_keeps_apps() {
        let b = Blacklist::new(&BlacklistConfig::default());
        for cmd in [
            "sleep 5",
            "/bin/bash -c x",
            "/usr/sbin/sshd -D",
            "containerd-shim -namespace moby",
            "/pause",
        ] {
            assert!(b.is_blacklisted(cmd), "{cmd}");
        }
        for cmd in [
            "java -jar app.jar",
            "/usr/local/bin/python3 app.py",
            "nginx: master process",
        ] {
            assert!(!b.is_blacklisted(cmd), "{cmd}");
        }
    }

    #[test]
    fn no_inclusions_reports_only_what_is_not_blacklisted() {
        let b = blacklist(&["x"], |_| {});
        assert_eq!(
            b.select(&[true, false, true], &[cpu(90.0), cpu(0.0), cpu(50.0)], 100),
            [false, true, false]
        );
    }

    #[test]
    fn top_cpu_readmits_the_heaviest_blacklisted() {
        let b = blacklist(&["x"], |c| c.top_cpu = 2);
        // Ranked over all: 3 (80) and 0 (60) are the top two; 0 and 3 are blacklisted.
        let usage = [cpu(60.0), cpu(10.0), cpu(5.0), cpu(80.0), cpu(0.0)];
        assert_eq!(
            b.select(&[true, true, true, true, true], &usage, 100),
            [true, false, false, true, false]
        );
    }

    #[test]
    fn top_ranking_ignores_idle_processes() {
        let b = blacklist(&["x"], |c| c.top_cpu = 3);
        assert_eq!(
            b.select(&[true, true], &[cpu(0.0), cpu(0.0)], 100),
            [false, false]
        );
    }

    #[test]
    fn top_mem_and_io() {
        let usage = [
            Usage {
                rss_bytes: 500,
                read_bytes_per_sec: 1.0,
                write_bytes_per_sec: 9.0,
                ..Usage::default()
            },
            Usage {
                rss_bytes: 100,
                read_bytes_per_sec: 7.0,
                write_bytes_per_sec: 0.0,
                ..Usage::default()
            },
            Usage {
                rss_bytes: 300,
                read_bytes_per_sec: 0.0,
                write_bytes_per_sec: 2.0,
                ..Usage::default()
            },
        ];
        let all = [true, true, true];
        assert_eq!(
            blacklist(&["x"], |c| c.top_mem = 1).select(&all, &usage, 1000),
            [true, false, false]
        );
        assert_eq!(
            blacklist(&["x"], |c| c.top_io_read = 1).select(&all, &usage, 1000),
            [false, true, false]
        );
        assert_eq!(
            blacklist(&["x"], |c| c.top_io_write = 2).select(&all, &usage, 1000),
            [true, false, true]
        );
    }

    #[test]
    fn thresholds_readmit_anything_above() {
        let b = blacklist(&["x"], |c| c.cpu_threshold = Some(20.0));
        assert_eq!(
            b.select(
                &[true, true, true],
                &[cpu(20.0), cpu(20.1), cpu(150.0)],
                100
            ),
            [false, true, true]
        );
        let b = blacklist(&["x"], |c| c.mem_threshold = Some(10.0));
        let usage = [
            Usage {
                rss_bytes: 100,
                ..Usage::default()
            },
            Usage {
                rss_bytes: 101,
                ..Usage::default()
            },
        ];
        assert_eq!(b.select(&[true, true], &usage, 1000), [false, true]);
    }

    #[test]
    fn rules_combine() {
        let b = blacklist(&["x"], |c| {
            c.top_mem = 1;
            c.cpu_threshold = Some(50.0);
        });
        let usage = [
            Usage {
                rss_bytes: 900,
                ..Usage::default()
            },
            Usage {
                cpu_pct: 70.0,
                rss_bytes: 10,
                ..Usage::default()
            },
            Usage {
                cpu_pct: 10.0,
                rss_bytes: 10,
                ..Usage::default()
            },
            Usage {
                cpu_pct: 99.0,
                ..Usage::default()
            },
        ];
        assert_eq!(
            b.select(&[true, true, true, false], &usage, 1000),
            [true, true, false, true]
        );
    }
}

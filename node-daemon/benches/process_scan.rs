//! Process collector benchmark: `cargo bench -p node-daemon --bench process_scan`
//! (or `bench/process-scan.sh`, which also provides psutil in a venv).
//!
//! Starts `BENCH_EXTRA_PROCS` (default 1000) idle `/bin/sleep` processes, then measures,
//! in the same run, interleaved, over `BENCH_REPS` repetitions (default 9; medians):
//!
//! - psutil: `bench/psutil_scan.py --serve` run by `BENCH_PYTHON` (default
//!   `.venv/bin/python` of the workspace, else `python3`): `process_iter()` + `oneshot()`
//!   gathering the fields the collector reports, timed in-process, one pass per request.
//!   The targets are judged against its warm passes (process_iter's cache of Process
//!   objects kept, psutil's fastest); a cold pass (that cache emptied first) is shown for
//!   information;
//! - bare loop: for every pid in /proc, open and read to the end (`read_to_end`) exactly
//!   the files a cold scan reads — stat, and for user processes io, the size of the fd
//!   directory (stat()), cmdline, the exe link, status and cgroup — into a reused buffer,
//!   and nothing else (stat's flags are looked at to skip kernel threads, as the
//!   collector does);
//! - bare loop, steady files: the same for what a steady-state cycle reads (stat, io, fd);
//! - lean loop (information): the same files read the way the collector reads them, one
//!   open, one read and one close each, with no parsing: the syscall floor;
//! - cold: `ProcessCollector::new` and one `collect`;
//! - steady: `collect` on a collector that has collected before.
//!
//! The collector runs with an empty blacklist, so that every process is kept and
//! reported. Costs are per numeric /proc entry of the pass (kernel threads included; all
//! variants see the same entries), in wall time and in CPU time of the measuring thread
//! (the latter is steadier when other work shares the CPUs). Prints a table and the
//! ratios against the targets, judged on wall time and, for information, on CPU time, and
//! exits 0 either way.
//!
//! For profiling, `BENCH_ONLY=cold|steady|bare|lean` runs only that variant `BENCH_REPS`
//! times, e.g. under `perf record`.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::thread_cpu;
use node_daemon::collect::proc_files::keyed_u64;
use node_daemon::collect::process::ProcessCollector;
use node_daemon::config::{BlacklistConfig, ProcessConfig};

const COLD_VS_PSUTIL: f64 = 0.25;
const COLD_VS_BARE: f64 = 1.3;
const STEADY_VS_PSUTIL: f64 = 0.125;

/// Child processes killed when dropped (also while unwinding from a panic) and, through
/// PR_SET_PDEATHSIG, when this process dies without unwinding.
struct Children(Vec<Child>);

fn die_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

impl Children {
    fn spawn_idle(n: usize) -> Self {
        let mut idle = Self(Vec::with_capacity(n));
        for _ in 0..n {
            let child = die_with_parent(
                Command::new("/bin/sleep")
                    .arg("3600")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start idle process {}: {e}", idle.0.len()));
            idle.0.push(child);
        }
        idle
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// Wall and CPU time of the calling thread.
#[derive(Clone, Copy)]
struct Times {
    wall: Duration,
    cpu: Duration,
}

fn timed<T>(f: impl FnOnce() -> T) -> (Times, T) {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let out = f();
    let times = Times {
        wall: wall.elapsed(),
        cpu: thread_cpu().saturating_sub(cpu),
    };
    (times, out)
}

/// One timed pass and the number of numeric /proc entries it covered.
#[derive(Clone, Copy)]
struct Pass {
    times: Times,
    entries: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Clock {
    Wall,
    Cpu,
}

impl Pass {
    fn per_entry_us(self, clock: Clock) -> f64 {
        let t = match clock {
            Clock::Wall => self.times.wall,
            Clock::Cpu => self.times.cpu,
        };
        t.as_secs_f64() * 1e6 / self.entries.max(1) as f64
    }
}

#[derive(Default)]
struct Series(Vec<Pass>);

impl Series {
    fn push(&mut self, times: Times, entries: u64) {
        self.0.push(Pass { times, entries });
    }

    fn median_us(&self, clock: Clock) -> Option<f64> {
        let mut v: Vec<f64> = self.0.iter().map(|p| p.per_entry_us(clock)).collect();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        match v.len() {
            0 => None,
            n if n % 2 == 1 => Some(v[mid]),
            _ => Some((v[mid - 1] + v[mid]) / 2.0),
        }
    }

    fn min_max_us(&self) -> (f64, f64) {
        self.0
            .iter()
            .map(|p| p.per_entry_us(Clock::Wall))
            .fold((f64::INFINITY, 0.0), |(lo, hi), x| (lo.min(x), hi.max(x)))
    }

    fn median_entries(&self) -> u64 {
        let mut v: Vec<u64> = self.0.iter().map(|p| p.entries).collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }
}

/// How the file-reading loops read a file.
#[derive(Clone, Copy, PartialEq)]
enum Reads {
    /// `File::open` + `read_to_end` into a cleared buffer (std adds a statx and an lseek
    /// to size the buffer, and reads until a read returns 0).
    ToEnd,
    /// `File::open` + reads until one leaves the buffer partly unfilled, as the collector
    /// reads /proc files.
    Lean,
}

fn read_file(how: Reads, path: &str, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut file = std::fs::File::open(path)?;
    match how {
        Reads::ToEnd => {
            buf.clear();
            file.read_to_end(buf)
        }
        Reads::Lean => {
            let mut len = 0;
            loop {
                if len == buf.len() {
                    buf.resize((2 * buf.len()).max(4096), 0);
                }
                let want = buf.len() - len;
                let n = file.read(&mut buf[len..])?;
                len += n;
                if n < want {
                    return Ok(len);
                }
            }
        }
    }
}

/// `flags` (field 9) of /proc/<pid>/stat has PF_KTHREAD.
fn is_kernel_thread(stat: &[u8]) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    std::str::from_utf8(&stat[close + 1..])
        .ok()
        .and_then(|rest| rest.split_ascii_whitespace().nth(6))
        .and_then(|flags| flags.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

/// Opens and reads the files a cold (`cold`) or steady-state scan reads, in the same order,
/// and nothing else. Returns the numeric /proc entries seen.
fn file_loop(how: Reads, cold: bool, buf: &mut Vec<u8>, path: &mut String) -> u64 {
    use std::fmt::Write as _;
    let set = |path: &mut String, pid: u32, file: &str| {
        path.clear();
        let _ = write!(path, "/proc/{pid}/{file}");
    };
    let mut entries = 0;
    let mut bytes = 0usize;
    for entry in std::fs::read_dir("/proc").expect("list /proc") {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        entries += 1;
        set(path, pid, "stat");
        let Ok(n) = read_file(how, path, buf) else {
            continue;
        };
        if is_kernel_thread(&buf[..n]) {
            continue;
        }
        bytes += n;
        set(path, pid, "io");
        bytes += read_file(how, path, buf).unwrap_or(0);
        set(path, pid, "fd");
        bytes += std::fs::metadata(&*path).map_or(0, |m| m.len() as usize);
        if cold {
            set(path, pid, "cmdline");
            bytes += read_file(how, path, buf).unwrap_or(0);
            set(path, pid, "exe");
            bytes += std::fs::read_link(&*path).map_or(0, |p| p.as_os_str().len());
            for file in ["status", "cgroup"] {
                set(path, pid, file);
                bytes += read_file(how, path, buf).unwrap_or(0);
            }
        }
    }
    black_box(bytes);
    entries
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BENCH_PYTHON") {
        return p.into();
    }
    let venv = workspace_root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// `psutil_scan.py --serve`: one psutil pass per request, so that its passes interleave
/// with the Rust ones and see the same load.
struct Psutil {
    child: Children,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    version: String,
}

impl Psutil {
    fn start() -> Result<Self, String> {
        let python = python();
        let script = workspace_root().join("bench/psutil_scan.py");
        let mut child = die_with_parent(
            Command::new(&python)
                .arg(&script)
                .arg("--serve")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut psutil = Self {
            child: Children(vec![child]),
            stdin,
            stdout,
            version: String::new(),
        };
        let ready = psutil
            .line()
            .map_err(|e| format!("{} {}: {e}", python.display(), script.display()))?;
        psutil.version = ready["psutil"].as_str().unwrap_or("?").to_string();
        Ok(psutil)
    }

    fn line(&mut self) -> Result<serde_json::Value, String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.is_empty() {
            let mut stderr = String::new();
            if let Some(err) = self.child.0[0].stderr.as_mut() {
                let _ = err.read_to_string(&mut stderr);
            }
            let last = stderr.lines().last().unwrap_or("exited").trim().to_string();
            return Err(last);
        }
        serde_json::from_str(&line).map_err(|e| format!("bad output `{}`: {e}", line.trim()))
    }

    /// One pass: its in-process times and the processes it gathered.
    fn pass(&mut self, cold: bool) -> Result<(Times, u64), String> {
        let stdin = self.stdin.as_mut().ok_or("psutil's stdin is closed")?;
        stdin
            .write_all(if cold { b"cold\n" } else { b"warm\n" })
            .and_then(|()| stdin.flush())
            .map_err(|e| e.to_string())?;
        let v = self.line()?;
        match (
            v["seconds"].as_f64(),
            v["cpu_seconds"].as_f64(),
            v["processes"].as_u64(),
        ) {
            (Some(wall), Some(cpu), Some(n)) => Ok((
                Times {
                    wall: Duration::from_secs_f64(wall),
                    cpu: Duration::from_secs_f64(cpu),
                },
                n,
            )),
            _ => Err(format!("bad output `{v}`")),
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_entries() -> usize {
    std::fs::read_dir("/proc").map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count()
    })
}

fn verdict(ratio: Option<f64>, limit: f64) -> String {
    match ratio {
        Some(r) if r <= limit => format!("{r:6.3}   <= {limit:<6} PASS"),
        Some(r) => format!("{r:6.3}   <= {limit:<6} FAIL"),
        None => format!("{:>6}   <= {limit:<6} N/A (psutil unavailable)", "-"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and must not start
    // a thousand processes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("process_scan: run with `cargo bench -p node-daemon --bench process_scan`");
        return;
    }
    let extra = env_usize("BENCH_EXTRA_PROCS", 1000);
    let reps = env_usize("BENCH_REPS", 9).max(1);
    let only = std::env::var("BENCH_ONLY").ok();
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| keyed_u64(&m, "MemTotal"))
        .map_or(1 << 30, |kb| kb * 1024);
    let config = ProcessConfig {
        blacklist: BlacklistConfig {
            patterns: Vec::new(),
            top_cpu: 0,
            top_io_read: 0,
            top_io_write: 0,
            top_mem: 0,
            cpu_threshold: None,
            mem_threshold: None,
        },
        extra_sensitive_words: Vec::new(),
    };
    let new_collector = || ProcessCollector::new(&config, "bench-host").expect("collector");

    let mut psutil = if only.is_none() {
        Psutil::start()
    } else {
        Err("not run with BENCH_ONLY".into())
    };
    let before = proc_entries();
    let (spawn_time, idle) = timed(|| Children::spawn_idle(extra));
    println!(
        "process_scan: {} idle /bin/sleep processes started in {:.1} s; /proc lists {} entries (was {before})",
        idle.0.len(),
        spawn_time.wall.as_secs_f64(),
        proc_entries(),
    );

    let mut buf = Vec::with_capacity(4096);
    let mut path = String::with_capacity(64);
    // Warm-up: dentries of the new processes, page cache, psutil's Process objects.
    file_loop(Reads::ToEnd, true, &mut buf, &mut path);
    black_box(new_collector().collect(mem_total).expect("collect"));
    if let Ok(p) = psutil.as_mut() {
        if let Err(e) = p.pass(false) {
            psutil = Err(e);
        }
    }
    let mut warm = new_collector();
    warm.collect(mem_total).expect("collect");

    if let Some(only) = only {
        for _ in 0..reps {
            match only.as_str() {
                "cold" => drop(black_box(new_collector().collect(mem_total))),
                "steady" => drop(black_box(warm.collect(mem_total))),
                "bare" => drop(file_loop(Reads::ToEnd, true, &mut buf, &mut path)),
                "lean" => drop(file_loop(Reads::Lean, true, &mut buf, &mut path)),
                other => panic!("BENCH_ONLY={other}: expected cold, steady, bare or lean"),
            }
        }
        return;
    }

    let mut s_psutil = Series::default();
    let mut s_psutil_cold = Series::default();
    let mut s_bare = Series::default();
    let mut s_bare_steady = Series::default();
    let mut s_lean = Series::default();
    let mut s_lean_steady = Series::default();
    let mut s_cold = Series::default();
    let mut s_steady = Series::default();
    let mut reported = 0;
    for _ in 0..reps {
        let (t, n) = timed(|| file_loop(Reads::ToEnd, true, &mut buf, &mut path));
        s_bare.push(t, n);
        let (t, n) = timed(|| file_loop(Reads::ToEnd, false, &mut buf, &mut path));
        s_bare_steady.push(t, n);
        let (t, n) = timed(|| file_loop(Reads::Lean, true, &mut buf, &mut path));
        s_lean.push(t, n);
        let (t, n) = timed(|| file_loop(Reads::Lean, false, &mut buf, &mut path));
        s_lean_steady.push(t, n);

        let (t, scan) = timed(|| new_collector().collect(mem_total).expect("collect"));
        s_cold.push(t, scan.counts.seen);
        reported = scan.counts.reported;
        drop(black_box(scan));

        let (t, scan) = timed(|| warm.collect(mem_total).expect("collect"));
        s_steady.push(t, scan.counts.seen);
        drop(black_box(scan));

        if let Ok(p) = psutil.as_mut() {
            match p.pass(true).and_then(|cold| Ok((cold, p.pass(false)?))) {
                Ok(((tc, nc), (tw, nw))) => {
                    s_psutil_cold.push(tc, nc);
                    s_psutil.push(tw, nw);
                }
                Err(e) => psutil = Err(e),
            }
        }
    }
    let psutil_version = psutil.map(|p| p.version.clone());
    drop(idle);

    println!(
        "{reps} interleaved repetitions, medians; {} /proc entries per pass; {reported} processes \
         reported by the collector (empty blacklist)",
        s_cold.median_entries()
    );
    println!();
    println!(
        "{:<44} {:>10} {:>9} {:>16} {:>10}",
        "variant", "us/process", "ms/pass", "min..max us/proc", "CPU us/pr."
    );
    let row = |name: &str, series: &Series| match series.median_us(Clock::Wall) {
        Some(us) => {
            let (lo, hi) = series.min_max_us();
            println!(
                "{name:<44} {us:>10.1} {:>9.1} {:>16} {:>10.1}",
                us * series.median_entries() as f64 / 1e3,
                format!("{lo:.1}..{hi:.1}"),
                series.median_us(Clock::Cpu).unwrap_or(f64::NAN),
            );
        }
        None => println!("{name:<44} {:>10}", "-"),
    };
    match &psutil_version {
        Ok(v) => {
            row(
                &format!("psutil {v}, warm (process_iter + oneshot)"),
                &s_psutil,
            );
            row("psutil, cold (process_iter cache emptied)", &s_psutil_cold);
        }
        Err(e) => println!("{:<44} {:>10}   unavailable: {e}", "psutil", "-"),
    }
    row("bare loop, cold files (read_to_end)", &s_bare);
    row("bare loop, steady files (read_to_end)", &s_bare_steady);
    row("lean loop, cold files (one read per file)", &s_lean);
    row(
        "lean loop, steady files (one read per file)",
        &s_lean_steady,
    );
    row("cold snapshot (new + collect)", &s_cold);
    row("steady-state collect", &s_steady);

    for clock in [Clock::Wall, Clock::Cpu] {
        let us = |s: &Series| s.median_us(clock).unwrap_or(f64::NAN);
        let psutil_us = s_psutil.median_us(clock);
        let (bare, cold, steady) = (us(&s_bare), us(&s_cold), us(&s_steady));
        println!();
        println!(
            "{:<44} {:>6}   {:<9} result",
            match clock {
                Clock::Wall => "ratio (wall time: the targets)",
                Clock::Cpu => "ratio (CPU time: for information)",
            },
            "value",
            "target"
        );
        let line = |name: &str, text: String| println!("{name:<44} {text}");
        line(
            "(a) cold / psutil",
            verdict(psutil_us.map(|p| cold / p), COLD_VS_PSUTIL),
        );
        line("(a) cold / bare", verdict(Some(cold / bare), COLD_VS_BARE));
        line(
            "(b) steady / psutil",
            verdict(psutil_us.map(|p| steady / p), STEADY_VS_PSUTIL),
        );
        if clock == Clock::Wall {
            let info = |name: &str, value: Option<f64>| match value {
                Some(v) => println!("{name:<44} {v:6.3}   (information)"),
                None => println!("{name:<44} {:>6}   (information)", "-"),
            };
            info(
                "cold / psutil cold",
                s_psutil_cold.median_us(clock).map(|p| cold / p),
            );
            info("bare / psutil", psutil_us.map(|p| bare / p));
            info("lean / psutil", psutil_us.map(|p| us(&s_lean) / p));
            info("cold / lean", Some(cold / us(&s_lean)));
            info("steady / lean steady", Some(steady / us(&s_lean_steady)));
        }
    }
}

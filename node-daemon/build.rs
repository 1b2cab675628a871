//! Builds the network tracer's eBPF programs (`bpf/network.bpf.c`) with clang against a
//! `vmlinux.h` that bpftool dumps from this machine's kernel BTF (CO-RE relocations make
//! the object load on other BTF kernels). Without clang, bpftool or kernel BTF the daemon
//! is built without them and the tracer polls /proc; the reason is compiled in and shown
//! in status.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCES: [&str; 2] = ["bpf/network.bpf.c", "bpf/network.h"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sts_bpf)");
    for source in SOURCES {
        println!("cargo::rerun-if-changed={source}");
    }
    println!("cargo::rerun-if-env-changed=STS_BUILD_WITHOUT_BPF");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let reason = if env::var_os("STS_BUILD_WITHOUT_BPF").is_some() {
        Err("built with STS_BUILD_WITHOUT_BPF set".to_string())
    } else {
        build(&out)
    };
    match reason {
        Ok(()) => println!("cargo::rustc-cfg=sts_bpf"),
        Err(why) => {
            println!("cargo::warning=eBPF programs not built: {why}");
            // Build again once the toolchain is installed (scripts/setup.sh).
            for dir in ["/usr/bin", "/usr/sbin", "/usr/include"] {
                if Path::new(dir).is_dir() {
                    println!("cargo::rerun-if-changed={dir}");
                }
            }
            std::fs::write(out.join("bpf-missing.txt"), why).expect("write to OUT_DIR");
        }
    }
}

fn build(out: &Path) -> Result<(), String> {
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    if !btf.exists() {
        return Err("this build machine's kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    let dump = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(btf)
        .args(["format", "c"])
        .output()
        .map_err(|e| format!("bpftool: {e} (Debian package bpftool)"))?;
    if !dump.status.success() {
        return Err(format!(
            "bpftool btf dump failed: {}",
            String::from_utf8_lossy(&dump.stderr).trim()
        ));
    }
    std::fs::write(out.join("vmlinux.h"), &dump.stdout).map_err(|e| e.to_string())?;
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => return Err(format!("no eBPF target for architecture {other}")),
        Err(_) => return Err("CARGO_CFG_TARGET_ARCH unset".into()),
    };
    let object = out.join("network.bpf.o");
    let compiled = Command::new("clang")
        .args(["-g", "-O2", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-I")
        .arg(out)
        .args(["-I", "bpf", "-c", "bpf/network.bpf.c", "-o"])
        .arg(&object)
        .output()
        .map_err(|e| format!("clang: {e} (Debian packages clang, libbpf-dev)"))?;
    if !compiled.status.success() {
        let stderr = String::from_utf8_lossy(&compiled.stderr);
        // A missing compiler or headers is a machine without the toolchain; anything
        // else is a bug in the program, which must fail the build.
        if stderr.contains("bpf/bpf_helpers.h") {
            return Err("libbpf headers missing (Debian package libbpf-dev)".into());
        }
        panic!("clang failed on bpf/network.bpf.c:\n{stderr}");
    }
    // BTF-only debug info is what the loader needs; strip DWARF to keep the binary small.
    let _ = Command::new("llvm-strip").arg("-g").arg(&object).status();
    Ok(())
}

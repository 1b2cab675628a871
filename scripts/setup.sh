#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine of this kind:
# Debian packages (only those missing), cargo-fuzz and the Python tools in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cc >/dev/null || need+=(build-essential)
command -v python3 >/dev/null || need+=(python3 python3-venv)
command -v curl >/dev/null || need+=(curl)
# A static busybox makes the container tests' image (the engine has no images).
[[ -x /bin/busybox ]] || need+=(busybox-static)
# The network tracer's eBPF programs: clang -target bpf, libbpf's headers, and bpftool to
# dump the kernel's BTF as vmlinux.h (node-daemon/build.rs).
command -v clang >/dev/null || need+=(clang)
[[ -f /usr/include/bpf/bpf_helpers.h ]] || need+=(libbpf-dev)
command -v bpftool >/dev/null || need+=(bpftool)
# ISA-L's igzip (the forwarder's gzip), built from source by the isal-sys crate.
command -v nasm >/dev/null || need+=(nasm)
command -v make >/dev/null || need+=(make)
command -v autoreconf >/dev/null || need+=(autoconf)
command -v aclocal >/dev/null || need+=(automake)
command -v libtoolize >/dev/null || need+=(libtool)
# The kernel matrix (integration-tests/vm/): Debian kernels booted under qemu with an
# initramfs made by cpio; objcopy (binutils) strips the binaries that go in.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
command -v objcopy >/dev/null || need+=(binutils)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; this machine kind ships a Rust toolchain (rustup)" >&2
  exit 1
fi

# Coverage-guided fuzzing (scripts/fuzz.sh): cargo-fuzz, pinned, built from its crate.
cargo_fuzz=0.13.2
if [[ $(cargo fuzz --version 2>/dev/null) != "cargo-fuzz $cargo_fuzz" ]]; then
  echo "setup: installing cargo-fuzz $cargo_fuzz"
  cargo install --locked --quiet cargo-fuzz --version "$cargo_fuzz"
fi

scripts/python-env.sh

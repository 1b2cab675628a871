#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of the decoders and parsers: builds the
# targets of fuzz/ and runs each named one (default: all) for SECONDS (default 60), from
# its seeds in fuzz/corpus/<target>/ and what earlier runs added in
# fuzz/target/corpus/<target>/. Prints a line per target; fails if any crashed, hung or
# ran out of memory, naming the input that did it (kept in fuzz/artifacts/<target>/).
# See docs/FUZZING.md.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: scripts/fuzz.sh [SECONDS] [TARGET...]"
seconds=${1:-60}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "$usage" >&2; exit 2; }
(($# == 0)) || shift
# libFuzzer counts a target past this much memory, or an input taking this long, as a crash.
rss_limit_mb=2048
input_timeout_s=30

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: cargo-fuzz is missing (scripts/setup.sh installs it)" >&2
  exit 1
fi

list=$(cargo fuzz list)
mapfile -t all <<<"$list"
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
for target in "${targets[@]}"; do
  if [[ " ${all[*]} " != *" $target "* ]]; then
    echo "fuzz: no target $target (targets: ${all[*]})" >&2
    exit 2
  fi
done

started=$SECONDS
# cargo fuzz has no --locked: the committed fuzz/Cargo.lock is checked first.
cargo metadata --manifest-path fuzz/Cargo.toml --locked --format-version 1 >/dev/null
# The fuzzed code is safe Rust: coverage instrumentation without a sanitizer, which the
# stable toolchain builds.
cargo fuzz build --sanitizer none
host=$(rustc -vV | sed -n 's/^host: //p')
bin=fuzz/target/$host/release
built=$((SECONDS - started))

# The config_env target writes its token files under TMPDIR.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p fuzz/target/logs
failed=()
for target in "${targets[@]}"; do
  corpus=fuzz/target/corpus/$target
  artifacts=fuzz/artifacts/$target
  log=fuzz/target/logs/$target.log
  mkdir -p "$corpus" "$artifacts"
  # A target's dictionary: tokens of its input's syntax for the mutations.
  dict=()
  [[ ! -f fuzz/dict/$target.dict ]] || dict=(-dict="fuzz/dict/$target.dict")
  rc=0
  # New inputs go to the first corpus directory: the seeds stay as committed.
  TMPDIR=$scratch "$bin/$target" -max_total_time="$seconds" -rss_limit_mb="$rss_limit_mb" \
    -timeout="$input_timeout_s" -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" \
    "$corpus" "fuzz/corpus/$target" >"$log" 2>&1 || rc=$?
  final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  line=$(printf '%-20s %10s execs %8s/s %6s new inputs %5s MB peak' "$target" \
    "$(final_stat number_of_executed_units)" "$(final_stat average_exec_per_sec)" \
    "$(final_stat new_units_added)" "$(final_stat peak_rss_mb)")
  input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  if ((rc == 0)) && [[ -z $input ]]; then
    echo "fuzz: $line ok"
  else
    echo "fuzz: $line FAILED (exit $rc)"
    { grep -m1 -A1 "panicked at" "$log" || true; grep -m1 "ERROR: libFuzzer" "$log" || true; } |
      sed 's/^/fuzz:   /'
    echo "fuzz:   input: ${input:-none written}; log: $log"
    failed+=("$target")
  fi
done

echo "fuzz: ${#targets[@]} targets of ${seconds}s, built in ${built}s, all in $((SECONDS - started))s"
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]} (reproduce: fuzz/target/$host/release/<target> <input>)"
fi
# The closing line as test runners print it: a target that ran clean passed.
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
((${#failed[@]} == 0))

#!/usr/bin/env bash
# Time the README's main-job command as a new user meets it: a fresh clone, a fresh venv, no pip cache, an
# empty t2i-unlearn cache, `/usr/bin/time -v` around install + `t2i-unlearn demo`; then the second run (reuse).
# Usage: bash bench/demo_fresh.sh [RESULT_DIR]   (default /tmp/demo_fresh_result; the clone goes to /tmp/demo_fresh_clone)
# Writes out.txt/err.txt (first run), out2.txt/err2.txt (second run), uptime before and after, nproc.
set -u
repo="$(cd "$(dirname "$0")/.." && pwd)"
result="${1:-/tmp/demo_fresh_result}"
clone=/tmp/demo_fresh_clone
rm -rf "$result" "$clone" && mkdir -p "$result"
git clone -q "$repo" "$clone" && cd "$clone" || exit 1
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 T2I_UNLEARN_CACHE="$(mktemp -d)"
{ uptime; nproc; git log --oneline -1; } > "$result/before.txt"
/usr/bin/time -v bash -c 'python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e . && .venv/bin/t2i-unlearn demo' \
  > "$result/out.txt" 2> "$result/err.txt"
echo "rc=$?" > "$result/after.txt"
uptime >> "$result/after.txt"
/usr/bin/time -v .venv/bin/t2i-unlearn demo > "$result/out2.txt" 2> "$result/err2.txt"
grep -E "Elapsed|User time|System time|Maximum resident" "$result/err.txt" "$result/err2.txt"

#!/usr/bin/env bash
# Runs test programs and counts their PASS/FAIL lines.  A program that exits nonzero
# without printing a FAIL line (a crash, a sanitizer report) counts as one failure.
# Usage: tests/run.sh CMD [CMD ...]   (each CMD is one shell word list, quoted)
set -u
passed=0; failed=0
log_dir=${TEST_LOG_DIR:-build/test-logs}
mkdir -p "$log_dir"
for cmd in "$@"; do
  name=$(echo "$cmd" | tr -c 'A-Za-z0-9_.-' '_' | cut -c1-80)
  log="$log_dir/$name.log"
  start=$(date +%s.%N)
  bash -c "$cmd" >"$log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log"); s=$(grep -c '^SKIP ' "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1; echo "FAIL $cmd: exited with status $rc"; tail -n 20 "$log" | sed 's/^/    /'
  fi
  grep '^FAIL \|^SKIP ' "$log"
  printf '%-60s %4d passed %3d failed %s(%ss)\n' "$cmd" "$p" "$f" "$( [ "$s" -gt 0 ] && echo "$s skipped " )" "$secs"
  passed=$((passed + p)); failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

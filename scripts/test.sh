#!/usr/bin/env bash
# Runs the node:test suite over the compiled tests on every supported Node version: the
# machine's Node (20 in CI) and Node 24 (the active LTS, fetched by scripts/node24.sh into
# .cache/). Files run one at a time (tests that build network namespaces must not
# overlap), and the two versions run one after the other for the same reason.
#   TCPSPLIT_TEST_NODES="system"        only the machine's Node
#   TCPSPLIT_TEST_NODES="node24"        only Node 24
#   bash scripts/test.sh dist/test/x.test.js ...   only these files
# Every relay started through RelayProcess gets --workers $TCPSPLIT_TEST_WORKERS: two
# workers on the machine's Node, one on Node 24 (one pass each, so the suite covers both
# the cross-worker paths and the single worker without running twice). Set
# TCPSPLIT_TEST_WORKERS yourself to run both passes with that count.
# The emulated-WAN timing tests (WAN_TIMING below: RTT arithmetic, throughput at a cap,
# the paper's figures, early SYN, pool and Turbo-Start savings) run on the machine's Node
# only, unless the files are named or TCPSPLIT_TEST_NODE24_WAN=1: what they measure is
# the kernel's, the emulator's and the relay design's, not the Node version's, and the
# relay code they drive runs on Node 24 in the rest of the suite. Twice, they were the
# slowest and most host-sensitive quarter of the suite (about 230 s a pass).
set -euo pipefail
cd "$(dirname "$0")/.."

named=0
if [ $# -gt 0 ]; then files=("$@"); named=1; else
  mapfile -t files < <(find dist/test -name '*.test.js' | sort)
fi
WAN_TIMING='/lab-(early-syn|loss|paper|pool|relay|rtt|syn-flood|throughput|turbo|web)\.test\.js$'
if [ ${#files[@]} -eq 0 ]; then echo "no test files under dist/test" >&2; exit 1; fi

nodes=()
workers=()
kinds=()
for which in ${TCPSPLIT_TEST_NODES:-system node24}; do
  case "$which" in
    system) nodes+=("$(command -v node)"); workers+=("${TCPSPLIT_TEST_WORKERS:-2}"); kinds+=(system) ;;
    node24) nodes+=("$(bash scripts/node24.sh)"); workers+=("${TCPSPLIT_TEST_WORKERS:-1}"); kinds+=(node24) ;;
    *) echo "TCPSPLIT_TEST_NODES: unknown '$which' (system, node24)" >&2; exit 2 ;;
  esac
done

out=$(mktemp -t tcpsplit-test.XXXXXX)
trap 'rm -f "$out"' EXIT
status=0
summary=()
passed=0; failed=0; skipped=0
count() { awk -v k="# $1" '$1 " " $2 == k { n = $3 } END { print n + 0 }' "$out"; }
for i in "${!nodes[@]}"; do
  node=${nodes[$i]}
  w=${workers[$i]}
  version=$("$node" --version)
  run=("${files[@]}")
  note=""
  if [ "${kinds[$i]}" = node24 ] && [ "$named" = 0 ] && [ "${TCPSPLIT_TEST_NODE24_WAN:-0}" != 1 ]; then
    mapfile -t run < <(printf '%s\n' "${files[@]}" | grep -Ev "$WAN_TIMING")
    note=", without the $(( ${#files[@]} - ${#run[@]} )) emulated-WAN timing files"
  fi
  echo "=== node:test on Node $version ($node), relays with --workers $w$note ==="
  start=$SECONDS
  if TCPSPLIT_TEST_WORKERS=$w "$node" --test --test-reporter=tap --test-concurrency=1 --test-timeout=300000 "${run[@]}" | tee "$out"; then
    r=passed
  else
    r=FAILED; status=1
  fi
  p=$(count pass); f=$(count fail); s=$(count skipped)
  # A run that failed without a failing test (a file that did not load, a crash) still fails.
  if [ "$r" = FAILED ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  summary+=("Node $version, --workers $w$note: $r ($p passed, $f failed, $s skipped) in $((SECONDS - start)) s")
done
echo "=== summary ==="
printf '%s\n' "${summary[@]}"
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status

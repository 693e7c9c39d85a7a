#!/usr/bin/env bash
# Soak: `portwarden serve` for DURATION seconds (default 600) beside
# hostsim (50 processes × 10 TCP listeners, of which one answers HTTP and one
# never accepts, + 2 UDP), with listeners opened and closed ~50 times a
# second (a socket churner, and a short-lived process with 4 listeners
# started every second), 20 concurrent scrapers (half OpenMetrics + gzip on a
# kept-alive connection, half plain text on a new connection each), and short
# intervals so that every path runs often: discovery and checks every 2 s, a
# full rescan every 30 s, series of gone ports dropped after 30 s, ports
# learned into the baseline after 20 s. Reports scrape errors, latency, RSS
# and open fds after the warm-up (60 s) and at the end, panics, and the exit
# status after SIGTERM.
#
#   bash bench/soak.sh              # DURATION=600
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
cargo build --release --quiet --bin portwarden --example hostsim
ready=$(mktemp -u /tmp/portwarden-hostsim.XXXXXX.json)
"$PWD/target/release/examples/hostsim" --procs 50 --tcp 10 --udp 2 --fds 20 --http 1 --hung 1 --accept \
  --ready-file "$ready" &
sim=$!
trap 'kill $sim 2>/dev/null; wait 2>/dev/null; rm -f "$ready"' EXIT
until [ -f "$ready" ]; do sleep 0.5; done
python3 bench/soak.py --bin target/release/portwarden --duration "$DURATION"

#!/usr/bin/env bash
# `portwarden why PORT` against a cold `portwarden ls --json` on the busy
# host of examples/hostsim.rs (500 processes x 20 TCP + 2 UDP, 200 fds
# each: ~10,000 TCP and 1,000 UDP sockets, ~114,000 fds): `why` reads what
# `ls` reads, once, then looks at one port's queue, owner and connect.
# Target: <= 1.5x. hyperfine, 20 runs each, interleaved by hyperfine.
#
#   bash bench/why.sh
#
# Needs: hyperfine (Debian: apt-get install -y hyperfine).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
start_sim --procs 500 --tcp 20 --udp 2 --fds 200
# A TCP listener of a simulated process, asked by its own (loopback)
# address: a healthy walk through every step.
asked=$(python3 -c "
import json, sys
s = next(s for s in json.load(open(sys.argv[1]))['sockets'] if s['proto'] == 'tcp')
print(f\"[{s['addr']}]:{s['port']}\" if ':' in s['addr'] else f\"{s['addr']}:{s['port']}\")" "$ready")
$bin why "$asked" | head -1
state=$(mktemp -d)
hyperfine -N -w 2 -r "${RUNS:-20}" --export-json "$out/why-vs-ls.json" \
  "env PORTWARDEN_STATE_DIR=$state $bin ls --json" \
  "env PORTWARDEN_STATE_DIR=$state $bin why $asked"
rm -rf "$state"
python3 - "$out/why-vs-ls.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
ls, why = r[0], r[1]
print(f"| cold `ls --json` | {ls['mean']*1e3:.0f} ms ± {ls['stddev']*1e3:.0f} |")
print(f"| `why PORT` | {why['mean']*1e3:.0f} ms ± {why['stddev']*1e3:.0f} |")
print(f"| ratio | {why['mean']/ls['mean']:.2f}x (target <= 1.5x) |")
PY

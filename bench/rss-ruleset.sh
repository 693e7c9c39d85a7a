#!/usr/bin/env bash
# The exporter's RSS on the busy host *with a big firewall*: the memory
# measure of bench/serve.sh (hostsim --procs 500 --tcp 20 --udp 2 --fds 200
# --http 1 --accept, default settings, scraped every 5 s, the median RSS
# over 75-195 s by bench/rss.py), run inside a network namespace of the
# script's own that holds the 1,000-rule ruleset of benches/exposure.rs
# (examples/ruleset.rs prints it; 50 ports DNATed to containers behind a
# veth named docker0, forwarding on): every one of the ~11,000 sockets gets
# a verdict, the ruleset and its index are held. Target: <= 20 MB.
#
#   sudo bash bench/rss-ruleset.sh
#
# Needs root, iproute2 and nftables.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin portwarden --example hostsim --example ruleset
bin=$PWD/target/release/portwarden
out=target/bench
mkdir -p "$out"
ns=pw-bench-rss-$$
sim=""; exporter=""; ready=$(mktemp -u /tmp/portwarden-hostsim.XXXXXX.json); state=$(mktemp -d)
cleanup() {
  [ -n "$exporter" ] && kill "$exporter" 2>/dev/null && wait "$exporter" 2>/dev/null || true
  [ -n "$sim" ] && kill "$sim" 2>/dev/null && wait "$sim" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$ready" "$state"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add docker0 type veth peer name docker0p
ip -n "$ns" addr add 172.30.0.1/16 dev docker0
ip -n "$ns" link set docker0p up
ip -n "$ns" link set docker0 up
ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
target/release/examples/ruleset | ip netns exec "$ns" nft -f -
echo "ruleset: $(ip netns exec "$ns" nft list ruleset | grep -c -E 'accept|drop|dnat|jump') rules"

ip netns exec "$ns" "$PWD/target/release/examples/hostsim" --procs 500 --tcp 20 --udp 2 --fds 200 \
  --http 1 --accept --ready-file "$ready" &
sim=$!
until [ -f "$ready" ]; do
  kill -0 "$sim" 2>/dev/null || { echo "hostsim died" >&2; exit 1; }
  sleep 0.5
done
# A free port inside the namespace, where hostsim's listeners are.
port=$(ip netns exec "$ns" python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ip netns exec "$ns" env PORTWARDEN_STATE_DIR="$state" "$bin" serve \
  --web.listen-address "127.0.0.1:$port" 2>"$out/rss-ruleset.log" &
exporter=$!
ip netns exec "$ns" python3 bench/rss.py "$port" "$exporter" 75 195 "ruleset${LABEL:+-$LABEL}"
# The verdicts were made: the exposure family, by verdict.
ip netns exec "$ns" python3 - "$port" <<'PY'
import collections, re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
seen = collections.Counter(re.findall(r'^portwarden_port_exposure\{[^}]*exposure="(\w+)"', text, re.M))
print("portwarden_port_exposure series by verdict:", dict(seen))
PY

# Shared by the bench scripts that run the exporter beside the simulator:
# sourced from the repository root. Builds both, and gives
#   start_sim ARGS…   starts examples/hostsim.rs and waits for its ready file ($ready)
#   free_port         prints a free loopback port
#   cleanup           stops the exporter ($exporter) and the simulator; run at exit
cargo build --release --quiet --bin portwarden --example hostsim
bin=$PWD/target/release/portwarden
out=target/bench
mkdir -p "$out"

sim=""; exporter=""; ready=""
cleanup() {
  [ -n "$exporter" ] && kill "$exporter" 2>/dev/null && { wait "$exporter" 2>/dev/null || true; }
  [ -n "$sim" ] && kill "$sim" 2>/dev/null && { wait "$sim" 2>/dev/null || true; }
  [ -n "$ready" ] && rm -f "$ready"
  exporter=""; sim=""; ready=""
}
trap cleanup EXIT

# Each simulated process in a systemd-style unit of its own (a cgroup under
# the unified hierarchy) when we may make them (root): owners have units, as
# on a real host. UNITS=none leaves them in ours.
units_args() {
  local dir=${UNITS:-/sys/fs/cgroup/unified/hostsim-$$.slice}
  if [ "$dir" != none ] && [ -w "$(dirname "$dir")" ]; then
    echo "--units $dir"
  fi
}

start_sim() {
  ready=$(mktemp -u /tmp/portwarden-hostsim.XXXXXX.json)
  # shellcheck disable=SC2046
  "$PWD/target/release/examples/hostsim" "$@" $(units_args) --ready-file "$ready" &
  sim=$!
  until [ -f "$ready" ]; do
    kill -0 "$sim" 2>/dev/null || { echo "hostsim died" >&2; exit 1; }
    sleep 0.5
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

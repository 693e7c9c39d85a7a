#!/usr/bin/env bash
# Installs the .deb into this machine as a user would, checks what it put
# where, runs the installed binary, then removes it: `dpkg -r` must leave
# nothing but the conffile, `dpkg -P` not even that. Needs root.
#
#   bash deploy/check-deb.sh [path/to/portwarden.deb]   # default: builds it
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:-$(bash deploy/build-deb.sh)}
fail() { echo "check-deb: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i)"
dpkg-query -W portwarden >/dev/null 2>&1 && fail "portwarden is already installed here; not touching it"

expected=(
  /usr/bin/portwarden
  /usr/lib/systemd/system/portwarden.service
  /etc/default/portwarden
  /usr/share/man/man1/portwarden.1.gz
  /usr/share/man/man1/portwarden-ls.1.gz
  /usr/share/man/man1/portwarden-serve.1.gz
  /usr/share/man/man1/portwarden-baseline.1.gz
  /usr/share/man/man1/portwarden-check.1.gz
  /usr/share/man/man1/portwarden-why.1.gz
  /usr/share/bash-completion/completions/portwarden
  /usr/share/zsh/vendor-completions/_portwarden
  /usr/share/fish/vendor_completions.d/portwarden.fish
  /usr/share/doc/portwarden/README.md
  /usr/share/doc/portwarden/docs/runbooks.md
  /usr/share/doc/portwarden/docs/metrics.md
  /usr/share/portwarden/prometheus/portwarden.rules.yml
  /usr/share/portwarden/grafana/portwarden.json
)
trap 'dpkg -P portwarden >/dev/null 2>&1 || true' EXIT
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null
for f in "${expected[@]}"; do [ -e "$f" ] || fail "$f not installed"; done
/usr/bin/portwarden --version | grep -qx "portwarden $(dpkg-query -W -f '${Version}' portwarden | sed 's/-[0-9]*$//')" \
  || fail "--version does not match the package"
/usr/bin/portwarden ls --json >/tmp/portwarden-deb-ls.json || fail "installed ls failed"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' /tmp/portwarden-deb-ls.json || fail "ls --json is not JSON"
rm -f /tmp/portwarden-deb-ls.json
zcat /usr/share/man/man1/portwarden.1.gz | grep -q PORT_STATUS_INTERVAL || fail "man page without the settings"
bash -c 'source /usr/share/bash-completion/completions/portwarden && complete -p portwarden >/dev/null' \
  || fail "bash completion does not load"
files=$(dpkg -L portwarden | while read -r f; do if [ -f "$f" ]; then echo "$f"; fi; done)

dpkg -r portwarden >/dev/null
left=$(for f in $files; do if [ -e "$f" ]; then echo "$f"; fi; done)
[ "$left" = "/etc/default/portwarden" ] || fail "dpkg -r left: ${left:-nothing, not even the conffile}"
dpkg -P portwarden >/dev/null
[ ! -e /etc/default/portwarden ] || fail "dpkg -P left /etc/default/portwarden"
[ ! -e /etc/systemd/system/multi-user.target.wants/portwarden.service ] || fail "dpkg -P left the unit enabled"
trap - EXIT
echo "check-deb: $deb installs ${#expected[@]} checked files, runs, and removes cleanly"

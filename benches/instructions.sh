#!/usr/bin/env bash
# Instructions the serving process executes per proxied request, counted by callgrind: a figure
# that does not drift with the machine's speed, for telling whether a change made the request
# path cheaper. One keep-alive connection sends requests on the token route (1 token in the
# store; the check's SHA-256 runs without its CPU instructions under valgrind, so its share here
# is larger than on the machine). The count is the difference between a run of SMALL and one of
# LARGE requests, divided by LARGE - SMALL, so that start-up and shutdown cancel out. What the
# process does in the background meanwhile (the store follower's once-a-second look, the metrics'
# upkeep) is counted too, and the longer run lasts longer under valgrind: compare counts taken with
# the same SMALL and LARGE.
#
#   benches/instructions.sh
#   BASELINE=/tmp/old/target/release/tollgate benches/instructions.sh   # and another build
#   PROFILE=/tmp/tollgate.callgrind benches/instructions.sh             # keep the LARGE run's profile
#   BODY=16384 benches/instructions.sh       # a response body of that size, like an agent's config
#   ROUTE=public benches/instructions.sh     # the public route: everything but the token check
set -euo pipefail
# A failure inside a command substitution stops the script too, instead of a figure made of it.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

SMALL=${SMALL:-500}
LARGE=${LARGE:-5500}
ROUTE=${ROUTE:-token}
case $ROUTE in
  token) path=/api/agents/config ;;
  public) path=/public/agents/config ;;
  *) echo "instructions.sh: ROUTE is token or public, not $ROUTE" >&2; exit 1 ;;
esac

# shellcheck source=benches/common.sh
source benches/common.sh
require_tools valgrind:valgrind callgrind_annotate:valgrind curl:curl python3:python3
if [[ -n ${BASELINE:-} && ! -x $BASELINE ]]; then
  echo "instructions.sh: BASELINE $BASELINE is not an executable" >&2
  exit 1
fi

prepare_run

start_upstream

# BINARY REQUESTS [PROFILE] → the serving process's instructions over its whole life
count() {
  local binary=$1 requests=$2 profile=${3:-} dir
  dir=$(mktemp -d -p "$work")
  local port admin
  port=$(free_port)
  admin=$(free_port)
  write_config "$dir" "$port" "$admin" false
  valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$binary" serve --config "$dir/tollgate.toml" >"$dir/out.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  wait_http "http://127.0.0.1:$admin/readyz"
  local token
  token=tc-apiv1_$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  curl -sf -o /dev/null -X POST -H "Authorization: Bearer $(cat "$dir/admin.token")" \
    -H 'Content-Type: application/json' \
    --data "{\"tokens\": [{\"name\": \"bench\", \"token\": \"$token\"}]}" \
    "http://127.0.0.1:$admin/api/v1/tokens/import"
  python3 - "$port" "$token" "$requests" "$path" <<'EOF'
import http.client, sys
port, token, requests, path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
connection = http.client.HTTPConnection("127.0.0.1", port)
headers = {"Authorization": "Bearer " + token, "User-Agent": "Telegraf/1.33"}
for _ in range(requests):
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"instructions.sh: the proxy answered {response.status}")
EOF
  kill -TERM "$pid"
  wait "$pid" || true
  rm "$dir/pid"
  if [[ -n $profile ]]; then cp "$dir/callgrind.out" "$profile"; fi
  local total calibration
  total=$(callgrind_annotate "$dir/callgrind.out" 2>/dev/null |
    awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  [[ $total =~ ^[0-9]+$ ]] || { echo "instructions.sh: no count from callgrind" >&2; exit 1; }
  # The metrics' clock calibrates itself once, for as long as its samples take to settle: 8 to
  # 14 million instructions under valgrind, a difference that would pass for 1,000 per request.
  # Left out of the count, inclusive of what it calls.
  calibration=$(callgrind_annotate --inclusive=yes "$dir/callgrind.out" 2>/dev/null |
    awk '/quanta-[0-9.]+\/src\/lib.rs:quanta::Calibration::calibrate \[/ && !found++ { gsub(",", "", $1); print $1 }')
  echo $((total - ${calibration:-0}))
}

per_request() { # BINARY [PROFILE]
  local small large
  small=$(count "$1" "$SMALL")
  large=$(count "$1" "$LARGE" "${2:-}")
  echo $(((large - small) / (LARGE - SMALL)))
}

echo "instructions per request, $ROUTE route, one keep-alive connection ($LARGE - $SMALL requests)," \
  "${BODY:-a 16-byte} body:"
# Assigned first: a failure in the substitution then stops the script.
figure=$(per_request target/release/tollgate "${PROFILE:-}")
echo "  this build: $figure"
if [[ -n ${BASELINE:-} ]]; then
  figure=$(per_request "$BASELINE")
  echo "  baseline:   $figure"
fi

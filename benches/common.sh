# Shared by the benchmark scripts (sourced, not run): installing what they need, the build and the
# run's directory with its cleanup, free ports, waiting for a server, the upstream they all put
# behind the proxy, and tollgate's config.

bench_name=${0##*/}

# TOOL:PACKAGE... → installs the Debian packages of the tools that are missing, then fails
# loudly if a tool is still not there.
require_tools() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
  done
  if ((${#need[@]})); then
    echo "==> installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || { echo "$bench_name: ${pair%%:*} is missing" >&2; exit 1; }
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # URL: waits until it answers at all (a server under valgrind starts slowly)
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$bench_name: $1 never answered" >&2
  exit 1
}

# Starts examples/bench_upstream.rs (built already), answering with BODY bytes when BODY is set;
# sets up_port and upstream_pid, and adds the pid to the caller's `pids`, which it stops.
start_upstream() {
  up_port=$(free_port)
  # shellcheck disable=SC2086 # no BODY, no argument
  target/release/examples/bench_upstream "127.0.0.1:$up_port" ${BODY:-} >/dev/null &
  upstream_pid=$!
  pids+=("$upstream_pid")
  wait_http "http://127.0.0.1:$up_port/"
}

# DIR PORT ADMIN ACCESS_LOG → DIR/tollgate.toml: a listener on PORT in front of the upstream,
# where /public/** needs no token, and the admin API on ADMIN.
write_config() {
  local dir=$1 port=$2 admin=$3 access=$4
  cat >"$dir/tollgate.toml" <<CONFIG
[store]
path = "$dir/tollgate.redb"
[admin]
bind = "127.0.0.1:$admin"
token_file = "$dir/admin.token"
[log]
format = "json"
level = "warn"
access = $access
[[listener]]
name = "bench"
bind = "127.0.0.1:$port"
upstream = "http://127.0.0.1:$up_port"
[[listener.route]]
path = "/public/**"
public = true
CONFIG
}

# Builds the release binaries, makes the run's directory ($work) and the list of processes to stop
# (`pids`), and on exit stops them and those with a pid file in a directory of $work (servers
# started in command substitutions, nginx), waits for them to go (a stopping tollgate drains for
# a moment), then removes $work.
prepare_run() {
  echo "==> building (release)" >&2
  cargo build --release --locked --bin tollgate --example bench_upstream >&2
  work=$(mktemp -d)
  pids=()
  trap stop_run EXIT
}

stop_run() {
  local pid file
  for file in "$work"/*/pid "$work"/*/*.pid; do [[ -f $file ]] && pids+=("$(cat "$file")"); done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$work"
}

#!/usr/bin/env bash
# Throughput and latency through the proxy, in one run, against the alternatives an operator has:
#
#   direct          wrk → upstream
#   tollgate token  wrk → tollgate (a route that needs a token; 10,000 tokens in the store) → upstream
#   tollgate public wrk → tollgate (a public route: everything but the check) → upstream
#   tollgate logged the token route with the access log on (written to a file)
#   nginx           wrk → nginx (a map over $http_authorization holding the same 10,000 header values,
#                   401 otherwise, upstream keep-alive, worker_processes auto, in the foreground)
#                   → upstream
#
# Each system is measured at 64 connections (throughput, p50, p99) and at 1 connection (added
# latency), then at 1 connection again with wrk, the upstream and the serving processes all held
# on one core (see below), ROUNDS times, the systems alternating within each round so that machine
# drift hits them alike; the first table shows the median round, the second each comparison made
# within each round (throughput and p99 against nginx's, added latency): median, range, and a 95%
# interval that says how sure that median is. It also counts the CPU
# time each system's serving processes spent per request, on a shared machine whose speed drifts
# the steadiest comparison: for each proxy at 1 connection, its user and system time (its own
# work, and the kernel's for it) within each round and their differences from nginx's; at 64
# connections, its user and system time beside that of the upstream and of wrk, which share the
# two cores with it. Installs wrk and nginx from Debian's packages if missing.
#
#   benches/proxy.sh                      # ROUNDS=3 DURATION=10s by default
#   ROUNDS=5 DURATION=20s benches/proxy.sh
#   BASELINE=/tmp/old/target/release/tollgate benches/proxy.sh
#   BODY=16384 benches/proxy.sh          # the upstream answers with that many bytes, like a config
#   RESULTS=/tmp/run.txt benches/proxy.sh  # also keeps every round's raw figures in that file
#
# BASELINE adds a system, "baseline-token": the token route served by another build of tollgate,
# so that a change is measured against what it changes in the same run.
set -euo pipefail
# RESULTS is a path from where the script was called.
if [[ -n ${RESULTS:-} ]]; then RESULTS=$(realpath -m -- "$RESULTS"); fi
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
TOKENS=${TOKENS:-10000}
CONNECTIONS=${CONNECTIONS:-64}

# shellcheck source=benches/common.sh
source benches/common.sh
require_tools wrk:wrk nginx:nginx curl:curl pgrep:procps python3:python3 taskset:util-linux

prepare_run
bin=target/release/tollgate

start_upstream

# The tokens: random secrets in the Controller's format; wrk sends one from the middle of the set.
python3 - "$work" "$TOKENS" <<'EOF'
import json, secrets, sys
work, n = sys.argv[1], int(sys.argv[2])
tokens = ["tc-apiv1_" + secrets.token_hex(32) for _ in range(n)]
with open(f"{work}/import.json", "w") as f:
    json.dump({"tokens": [{"name": f"bench-{i}", "token": t} for i, t in enumerate(tokens)]}, f)
with open(f"{work}/nginx-map.conf", "w") as f:
    for t in tokens:
        f.write(f'"Bearer {t}" 1;\n')
with open(f"{work}/token", "w") as f:
    f.write(tokens[n // 2])
EOF
token=$(cat "$work/token")

start_tollgate() { # NAME ACCESS_LOG [BINARY] → prints the proxy port
  local name=$1 access=$2 binary=${3:-$bin} dir=$work/$1
  mkdir -p "$dir"
  local port admin
  port=$(free_port)
  admin=$(free_port)
  write_config "$dir" "$port" "$admin" "$access"
  "$binary" serve --config "$dir/tollgate.toml" >"$dir/out.log" 2>&1 &
  # This function runs in a command substitution: its `pids` is a copy, so the parent reads the
  # pid from this file to stop the process and to read its CPU time.
  echo $! >"$dir/pid"
  wait_http "http://127.0.0.1:$admin/readyz"
  curl -sf -o /dev/null -X POST -H "Authorization: Bearer $(cat "$dir/admin.token")" \
    -H 'Content-Type: application/json' --data-binary "@$work/import.json" \
    "http://127.0.0.1:$admin/api/v1/tokens/import"
  echo "$port"
}
tg_port=$(start_tollgate tollgate false)
tg_logged_port=$(start_tollgate logged true)
if [[ -n ${BASELINE:-} ]]; then
  [[ -x $BASELINE ]] || { echo "proxy.sh: BASELINE $BASELINE is not an executable" >&2; exit 1; }
  baseline_port=$(start_tollgate baseline false "$BASELINE")
fi

nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # Large enough that nginx builds the map's hash as it should (its docs: raise the maximum size
  # first); short of it, nginx warns and falls back to larger buckets, which are slower to search.
  map_hash_max_size 1048576;
  map_hash_bucket_size 256;
  map \$http_authorization \$token_ok {
    default 0;
    include $work/nginx-map.conf;
  }
  upstream backend {
    server 127.0.0.1:$up_port;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      if (\$token_ok = 0) {
        add_header WWW-Authenticate 'Bearer realm="nginx"' always;
        return 401 '{"error":"Invalid token"}';
      }
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
# nginx's own check first: a configuration it refuses, or one it only warns about (the map's
# hash), stops the run with nginx's words.
nginx_check=$(nginx -t -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" 2>&1) ||
  { echo "$nginx_check" >&2; echo "proxy.sh: nginx refused its configuration" >&2; exit 1; }
if grep -F '[warn]' <<<"$nginx_check" >&2; then
  echo "proxy.sh: nginx warned about its configuration" >&2
  exit 1
fi
# In the foreground, started like the other servers: a daemon would leave this script's session
# (setsid), and with the kernel's autogroups a session of its own is a scheduling group of its
# own, weighed against the group of wrk, the upstream and tollgate rather than thread by thread.
# That alone moved nginx's figures: in a group of its own it served 26,000 to 27,000 requests/s
# at 64 connections where in the shared one it served 37,000, and on one core it was preempted
# rather than waiting for the upstream's answer. Every system is measured in the same group.
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
pids+=("$!")
wait_http "http://127.0.0.1:$nginx_port/"

# Every system must answer 200 with the token before anything is measured, and the check must
# really be there: no token, 401.
declare -A url=(
  [direct]="http://127.0.0.1:$up_port/token"
  [tollgate-token]="http://127.0.0.1:$tg_port/token"
  [tollgate-public]="http://127.0.0.1:$tg_port/public/x"
  [tollgate-logged]="http://127.0.0.1:$tg_logged_port/token"
  [nginx]="http://127.0.0.1:$nginx_port/token"
)
systems=(direct tollgate-token tollgate-public tollgate-logged nginx)
if [[ -n ${BASELINE:-} ]]; then
  systems+=(baseline-token)
  url[baseline-token]="http://127.0.0.1:$baseline_port/token"
fi
for s in "${systems[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "${url[$s]}")
  [[ $code == 200 ]] || { echo "proxy.sh: $s answered $code with the token" >&2; exit 1; }
done
for s in "${systems[@]}"; do
  [[ $s == direct || $s == tollgate-public ]] && continue
  code=$(curl -s -o /dev/null -w '%{http_code}' "${url[$s]}")
  [[ $code == 401 ]] || { echo "proxy.sh: $s answered $code without a token" >&2; exit 1; }
done

# The processes that serve each system, whose CPU time is counted: for the direct path the upstream
# itself, for the others the proxy alone (the upstream's share is the same for all of them).
declare -A serving=(
  [direct]="$upstream_pid"
  [tollgate-token]="$(cat "$work/tollgate/pid")"
  [tollgate-public]="$(cat "$work/tollgate/pid")"
  [tollgate-logged]="$(cat "$work/logged/pid")"
  [nginx]="$(cat "$work/nginx/nginx.pid") $(pgrep -P "$(cat "$work/nginx/nginx.pid")" | tr '\n' ' ')"
)
[[ -n ${BASELINE:-} ]] && serving[baseline-token]="$(cat "$work/baseline/pid")"
[[ ${serving[nginx]} == *" "[0-9]* ]] || { echo "proxy.sh: nginx has no worker processes" >&2; exit 1; }
cpu_ticks() { # PIDS... → "user system" clock ticks, all threads
  local user=0 system=0 pid
  for pid in "$@"; do
    read -r u s < <(awk '{print $14, $15}' "/proc/$pid/stat")
    user=$((user + u)) system=$((system + s))
  done
  echo "$user $system"
}
sleeps() { # PIDS... → how many times their threads have waited (voluntary context switches)
  local total=0 pid n
  for pid in "$@"; do
    for n in $(awk '/^voluntary_ctxt_switches/ {print $2}' /proc/"$pid"/task/*/status); do
      total=$((total + n))
    done
  done
  echo "$total"
}

# wrk's latency figures in microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") print n; else if (u == "ms") print n * 1000; else if (u == "s") print n * 1000000
    else print n
  }'
}
# SYSTEM THREADS CONNECTIONS DURATION [CPUS] → "rps p50 p99 user system upstream wrk sleeps": the
# latencies in µs, then the CPU time per request in µs of the serving processes (user, system), of
# the upstream and of wrk, then how many times per request the serving processes waited. With
# CPUS, wrk runs on those cores only.
run_wrk() {
  local out before after up_before up_after wrk_cpu slept TIMEFORMAT='%3U %3S'
  local cores=${5:-$all_cores}
  # shellcheck disable=SC2086 # the list of pids splits on purpose
  before=$(cpu_ticks ${serving[$1]})
  # shellcheck disable=SC2086
  slept=$(sleeps ${serving[$1]})
  up_before=$(cpu_ticks "$upstream_pid")
  # wrk's own CPU time too: on two shared cores, what the load generator spends is not the
  # system's to spend, and it bounds what any proxy can reach against the direct path.
  { time taskset -c "$cores" wrk -t"$2" -c"$3" -d"$4" --latency -H "Authorization: Bearer $token" "${url[$1]}" \
    >"$work/wrk.out"; } 2>"$work/wrk.time"
  out=$(<"$work/wrk.out")
  # The last line: anything wrk itself says on stderr comes before `time`'s.
  wrk_cpu=$(tail -n 1 "$work/wrk.time" | awk '{print $1 + $2}')
  # shellcheck disable=SC2086
  after=$(cpu_ticks ${serving[$1]})
  # shellcheck disable=SC2086
  slept=$(($(sleeps ${serving[$1]}) - slept))
  up_after=$(cpu_ticks "$upstream_pid")
  if grep -q "Non-2xx" <<<"$out"; then
    echo "proxy.sh: $1 answered non-2xx under load:" >&2
    echo "$out" >&2
    exit 1
  fi
  local rps p50 p99 requests
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  ((requests > 0)) || { echo "proxy.sh: $1 served no request:" >&2; echo "$out" >&2; exit 1; }
  awk -v rps="$rps" -v p50="$p50" -v p99="$p99" -v before="$before" -v after="$after" \
    -v up_before="$up_before" -v up_after="$up_after" -v wrk="$wrk_cpu" -v n="$requests" -v slept="$slept" \
    -v hz="$(getconf CLK_TCK)" 'BEGIN {
      split(before, b, " "); split(after, a, " "); split(up_before, ub, " "); split(up_after, ua, " ")
      us = 1000000 / n
      print rps, p50, p99, (a[1] - b[1]) * us / hz, (a[2] - b[2]) * us / hz,
        (ua[1] + ua[2] - ub[1] - ub[2]) * us / hz, wrk * us, slept / n
    }'
}

# At one connection a request passes from wrk to the proxy to the upstream and back, each waking
# the next. On two cores the kernel places the three processes as it sees fit, and on a VM a
# wake-up across cores can cost tens of microseconds (the direct path's p50 with wrk and the
# upstream on one core and across two: about 20 and 85 µs on one VM of this class, 25 and 30–37 µs
# on another), so which placement a proxy happens to get can outweigh everything it does itself,
# and differs from round to round and proxy to proxy.
# Held on one core, no wake-up crosses a core, and the added latency is the proxy's own: its
# work and its two extra context switches. Every thread of the processes is moved (`taskset`),
# and moved back to the cores this script may use afterwards.
all_cores=$(taskset -c -p $$ | awk '{print $NF}')
hold() { # CPUS PIDS... → every thread of those processes on CPUS
  local cpus=$1 pid task
  shift
  for pid in "$@"; do
    for task in /proc/"$pid"/task/*; do
      # A thread may end between the listing and the move (an idle blocking-pool thread does):
      # only a thread that is still there and cannot be moved stops the run.
      taskset -c -p "$cpus" "${task##*/}" >/dev/null 2>&1 || [[ ! -e $task ]] ||
        { echo "proxy.sh: cannot move thread ${task##*/} of process $pid to cores $cpus" >&2; exit 1; }
    done
  done
}
one_core=$(cut -d, -f1 <<<"${all_cores%%-*}")

results=$work/results
: >"$results"
echo "==> warming up" >&2
for s in "${systems[@]}"; do run_wrk "$s" 2 "$CONNECTIONS" 2s >/dev/null; done
for round in $(seq 1 "$ROUNDS"); do
  # Rotate the order each round.
  order=("${systems[@]:$((round % ${#systems[@]}))}" "${systems[@]:0:$((round % ${#systems[@]}))}")
  for s in "${order[@]}"; do
    echo "==> round $round/$ROUNDS: $s, $CONNECTIONS connections" >&2
    # Assigned first, so that a failed run stops the script (set -e) rather than leaving a
    # short line in the results.
    measured=$(run_wrk "$s" 2 "$CONNECTIONS" "$DURATION")
    echo "$round $s many $measured" >>"$results"
    echo "==> round $round/$ROUNDS: $s, 1 connection" >&2
    measured=$(run_wrk "$s" 1 1 "$DURATION")
    echo "$round $s one $measured" >>"$results"
    echo "==> round $round/$ROUNDS: $s, 1 connection, on one core" >&2
    # shellcheck disable=SC2086 # the list of pids splits on purpose
    hold "$one_core" "$upstream_pid" ${serving[$s]}
    measured=$(run_wrk "$s" 1 1 "$DURATION" "$one_core")
    # shellcheck disable=SC2086
    hold "$all_cores" "$upstream_pid" ${serving[$s]}
    echo "$round $s core $measured" >>"$results"
  done
done
if [[ -n ${RESULTS:-} ]]; then cp "$results" "$RESULTS"; fi

python3 - "$results" "$CONNECTIONS" "$ROUNDS" "$DURATION" "$TOKENS" "${BODY:-16}" "${systems[@]}" <<'EOF'
import random
import sys
path, conns, rounds, duration, tokens, body, *systems = sys.argv[1:]
rows = {}
by_round = {}
for line in open(path):
    round_, system, mode, *figures = line.split()
    figures = tuple(float(f) for f in figures)
    rows.setdefault((system, mode), []).append(figures)
    by_round[(int(round_), system, mode)] = figures
def median(system, mode):
    runs = sorted(rows[(system, mode)])  # by throughput
    return runs[len(runs) // 2]
many = {s: median(s, "many") for s in systems}
one = {s: median(s, "one") for s in systems}
core = {s: median(s, "core") for s in systems}
print(f"{rounds} rounds of {duration}; median round; {tokens} tokens; a {body}-byte body; "
      f"wrk -t2 -c{conns} and -t1 -c1; one core: wrk, the upstream and the proxy held on one core")
print()
print(f"| system | req/s at {conns} conns | p50 | p99 | × direct | × nginx | CPU per request | req/s at 1 conn | p50 at 1 conn | added p50 | p50 at 1 conn, one core | added p50, one core |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for s in systems:
    rps, p50, p99, user, system, *_ = many[s]
    rps1, p501, *_ = one[s]
    added = p501 - one["direct"][1]
    p50_core = core[s][1]
    added_core = p50_core - core["direct"][1]
    print(f"| {s} | {rps:,.0f} | {p50:.0f} µs | {p99:.0f} µs | {rps / many['direct'][0]:.2f} "
          f"| {rps / many['nginx'][0]:.2f} | {user + system:.1f} µs | {rps1:,.0f} | {p501:.0f} µs | {added:+.0f} µs "
          f"| {p50_core:.0f} µs | {added_core:+.0f} µs |")
print()
print(f"token route / public route: {many['tollgate-token'][0] / many['tollgate-public'][0]:.3f}")
print("CPU per request: user and system time of the serving processes at 64 connections, per request:")
print("the upstream's for direct, the proxy's alone for the others.")
print()
# The same comparisons within each round, where the systems ran minutes apart rather than across
# the whole run: their spread says how far one run's figure can be trusted.
def middle(values):
    return sorted(values)[len(values) // 2]
def spread(values, fmt):
    values = sorted(values)
    return f"{fmt(middle(values))} ({fmt(values[0])} to {fmt(values[-1])})"
# How far the median of the rounds could move if the run were repeated: a 95% bootstrap interval
# (the rounds resampled with replacement, 2,000 times, with a fixed seed so that the same results
# give the same interval). A target is shown met only when the whole interval meets it; an interval
# that straddles the target says the run cannot tell.
resample = random.Random(1)
def interval(values, fmt):
    medians = sorted(middle(resample.choices(values, k=len(values))) for _ in range(2000))
    return f"{fmt(medians[50])} to {fmt(medians[1949])}"
def spread_and_interval(values, fmt):
    return f"{spread(values, fmt)}, 95%: {interval(values, fmt)}"
def per_round(f):
    return [f(r) for r in range(1, int(rounds) + 1)]
def rps(r, s):
    return by_round[(r, s, "many")][0]
def added(r, s, mode="one"):
    return by_round[(r, s, mode)][1] - by_round[(r, "direct", mode)][1]
def p99(r, s):
    return by_round[(r, s, "many")][2]
ratio = lambda v: f"{v:.2f}"
micros = lambda v: f"{v:+.0f} µs"
print(f"Within each round: median (lowest to highest) of {rounds} rounds, 95% interval of the median")
print()
print(f"| system | × nginx at {conns} conns | × direct | p99 ÷ nginx's at {conns} conns | added p50 at 1 conn | added p50 − nginx's | added p50, one core | added p50 − nginx's, one core |")
print("|---|---|---|---|---|---|---|---|")
for s in systems:
    if s in ("direct", "nginx"):
        continue
    print(f"| {s} | {spread_and_interval(per_round(lambda r: rps(r, s) / rps(r, 'nginx')), ratio)} "
          f"| {spread_and_interval(per_round(lambda r: rps(r, s) / rps(r, 'direct')), ratio)} "
          f"| {spread_and_interval(per_round(lambda r: p99(r, s) / p99(r, 'nginx')), ratio)} "
          f"| {spread(per_round(lambda r: added(r, s)), micros)} "
          f"| {spread_and_interval(per_round(lambda r: added(r, s) - added(r, 'nginx')), micros)} "
          f"| {spread(per_round(lambda r: added(r, s, 'core')), micros)} "
          f"| {spread_and_interval(per_round(lambda r: added(r, s, 'core') - added(r, 'nginx', 'core')), micros)} |")
print()
print("token route / public route, within each round: "
      + spread_and_interval(per_round(lambda r: rps(r, "tollgate-token") / rps(r, "tollgate-public")),
                            lambda v: f"{v:.3f}"))
print()
# At one connection a request's latency is the sum of what each process does for it, so the
# added latency's share that is the proxy's own work shows here: its user time (parsing, checking,
# forwarding) apart from its system time (the sockets, and waking the process at the other end).
# How often the proxy waits per request (at most twice: for the request, then for the upstream's
# answer) and the upstream's CPU time show the rest: a proxy that is asleep when the answer comes
# must be woken, which costs the waker and delays the answer.
def cpu_one(r, s, i):
    return by_round[(r, s, "one")][i]
print(f"At 1 connection, the proxy's CPU time per request: median (lowest to highest) of {rounds} rounds")
print()
print("| system | user time | system time | user − nginx's | system − nginx's | waits per request | upstream's CPU |")
print("|---|---|---|---|---|---|---|")
us = lambda v: f"{v:.1f} µs"
signed_us = lambda v: f"{v:+.1f} µs"
for s in systems:
    if s == "direct":
        continue
    user = spread(per_round(lambda r: cpu_one(r, s, 3)), us)
    system = spread(per_round(lambda r: cpu_one(r, s, 4)), us)
    waits = spread(per_round(lambda r: cpu_one(r, s, 7)), lambda v: f"{v:.2f}")
    upstream = spread(per_round(lambda r: cpu_one(r, s, 5)), us)
    if s == "nginx":
        print(f"| {s} | {user} | {system} | – | – | {waits} | {upstream} |")
        continue
    print(f"| {s} | {user} | {system} "
          f"| {spread(per_round(lambda r: cpu_one(r, s, 3) - cpu_one(r, 'nginx', 3)), signed_us)} "
          f"| {spread(per_round(lambda r: cpu_one(r, s, 4) - cpu_one(r, 'nginx', 4)), signed_us)} "
          f"| {waits} | {upstream} |")
print()
# Where the time of the two cores goes at 64 connections, per request. The cores are shared by
# wrk, the upstream and the proxy, so a proxy's throughput against the direct path is bounded by
# what the other two spend: to serve a share r of the direct path's requests with the cores as
# busy as the direct path kept them, a proxy may spend at most busy / (r × direct) − (upstream + wrk).
print(f"| system ({conns} conns, µs per request) | proxy user | proxy system | upstream | wrk | all | cores busy |")
print("|---|---|---|---|---|---|---|")
for s in systems:
    rps, _, _, user, system, upstream, wrk, _ = many[s]
    proxy = 0 if s == "direct" else user + system
    total = proxy + upstream + wrk
    shown = ("–", "–") if s == "direct" else (f"{user:.1f}", f"{system:.1f}")
    print(f"| {s} | {shown[0]} | {shown[1]} | {upstream:.1f} | {wrk:.1f} | {total:.1f} | {total * rps / 1e6:.2f} |")
d_rps, _, _, _, _, d_upstream, d_wrk, _ = many["direct"]
busy = (d_upstream + d_wrk) * d_rps / 1e6
print()
for s in ["tollgate-token", "nginx"]:
    rps, _, _, user, system, upstream, wrk, _ = many[s]
    allowed = busy * 1e6 / (0.45 * d_rps) - (upstream + wrk)
    print(f"{s}: 0.45 × direct would leave it {allowed:.1f} µs of CPU per request beside this run's "
          f"upstream and wrk ({upstream + wrk:.1f} µs); it spends {user + system:.1f} µs, "
          f"{system:.1f} of them in the kernel")
EOF

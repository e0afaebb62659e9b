#!/usr/bin/env bash
# benches/notify.sh: how fast `mailtrack notify` delivers, beside how fast `serve` answers
# clicks, on one core, in one run.
#
#   bash benches/notify.sh                      # about 2 minutes
#   ROUNDS=5 EVENTS=500000 bash benches/notify.sh
#
# Each round measures, back to back, on the same core (SUBJECT_CPU, 1):
#
#   serve clicks/s     `mailtrack serve` with the Redis sink, wrk on the other core, 64
#                      keep-alive connections on one signed link, DURATION seconds;
#   notify events/s    `mailtrack notify` started on a stream pre-filled with EVENTS Click
#                      events, one HTTP endpoint (batches of 100, the default concurrency and
#                      linger) to nginx answering 204 on the other core: EVENTS divided by the
#                      time from notify's start to the endpoint's group having nothing left
#                      to read and nothing pending (XINFO GROUPS lag and pending, every 20 ms).
#
# The report is each row's median, and their ratio: notify events/s ÷ serve clicks/s. The
# goal is 3 or more: one notify core keeps up with three serve cores.
#
# Then latency: at half of notify's median rate, benches/notify_load.py XADDs events at a steady
# rate (10 ms ticks) for PACED_SECONDS, and receives the deliveries itself (answering 204), and
# reports p50 and p99 from each event's XADD to the receiver's answer, once with the default
# linger (500 ms) and once with LINGER_MS (50). Goal: p99 under linger + 50 ms.
#
# Redis, nginx, wrk and the load script run on the other core (0). The machine is shared: the
# rows of a round run seconds apart, and only their ratio is reported as the result.
#
# Results: benches/results/notify-latest.md.

set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
EVENTS=${EVENTS:-300000}
PACED_SECONDS=${PACED_SECONDS:-10}
LINGER_MS=${LINGER_MS:-50}
SUBJECT_CPU=1
OTHER_CPU=0

P_SERVE=18281 P_SERVE_ADMIN=18282 P_NOTIFY_ADMIN=18283 P_REDIS=16479 P_NGINX=18284
P_RECEIVER=18285

cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailtrack-notify-bench.XXXXXX")
PIDS=()

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [ -n "${KEEP_WORK:-}" ] && log "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || missing+=(nginx)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v python3 >/dev/null || missing+=(python3)
    command -v taskset >/dev/null || missing+=(util-linux)
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null || die "missing ${missing[*]}, and this is not Debian"
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

wait_port() { # PORT [PID]
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then die "the server for port $1 exited"; fi
        sleep 0.1
    done
    die "nothing listens on port $1"
}

rcli() { redis-cli -p "$P_REDIS" "$@"; }

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

write_configs() {
    "$MAILTRACK" keygen --id 1 >"$WORK/keys.toml"
    printf 'whsec_%s\n' "$(head -c 32 /dev/urandom | base64)" >"$WORK/bench.secrets"
    common() {
        cat <<EOF
[tracking]
base_url = "http://127.0.0.1:$P_SERVE"
[keys]
file = "keys.toml"
[server]
http = "127.0.0.1:$P_SERVE"
max_connections_per_ip = 50000
shutdown_grace = 1
[admin]
listen = "127.0.0.1:$P_SERVE_ADMIN"
[events]
budget_per_minute = 4000000000
sink = "redis"
redis_url = "redis://127.0.0.1:$P_REDIS/0"
stream = "$1"
spool_dir = "spool-$1"
[notify]
admin_listen = "127.0.0.1:$P_NOTIFY_ADMIN"
EOF
    }
    common bench:serve >"$WORK/serve.toml"
    # notify-N.toml: the endpoint to nginx; paced-L.toml: to the load script's receiver.
    { common bench:notify; cat <<EOF
[[notify.endpoint]]
name = "nginx"
events = ["Click"]
url = "http://127.0.0.1:$P_NGINX/hook"
secrets_file = "bench.secrets"
allow_private = true
EOF
    } >"$WORK/notify.toml"
    local name linger_line
    for name in default short; do
        linger_line=""
        [ "$name" = short ] && linger_line="linger_ms = $LINGER_MS"
        { common "bench:paced-$name"; cat <<EOF
[[notify.endpoint]]
name = "paced"
events = ["Click"]
url = "http://127.0.0.1:$P_RECEIVER/hook"
secrets_file = "bench.secrets"
allow_private = true
$linger_line
EOF
        } >"$WORK/paced-$name.toml"
    done
}

start_redis() {
    taskset -c "$OTHER_CPU" redis-server --port "$P_REDIS" --save "" --appendonly no \
        --dir "$WORK" --logfile "$WORK/redis.log" &
    PIDS+=($!)
    wait_port "$P_REDIS" $!
}

start_nginx() {
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$P_NGINX;
        client_max_body_size 16m;
        client_body_buffer_size 1m;
        location / { return 204; }
    }
}
EOF
    taskset -c "$OTHER_CPU" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
    PIDS+=($!)
    wait_port "$P_NGINX" $!
}

serve_round() { # prints clicks/s
    local link pid rps
    taskset -c "$SUBJECT_CPU" "$MAILTRACK" serve --config "$WORK/serve.toml" 2>"$WORK/serve.log" &
    pid=$!
    wait_port "$P_SERVE" "$pid"
    link=$("$MAILTRACK" sign --config "$WORK/serve.toml" --message-id bench-0001 \
        'https://example.com/spring/sale?utm_source=mail')
    rps=$(taskset -c "$OTHER_CPU" wrk -t1 -c64 -d"${DURATION}s" "$link" \
        | awk '/Requests\/sec/ { print $2 }')
    kill -TERM "$pid"; wait "$pid" || true
    rcli DEL bench:serve >/dev/null
    printf '%.0f\n' "$rps"
}

notify_round() { # prints events/s
    local pid start end lag pending
    rcli DEL bench:notify >/dev/null
    python3 "$ROOT/benches/notify_load.py" fill "$P_REDIS" bench:notify "$EVENTS"
    start=$(date +%s.%N)
    taskset -c "$SUBJECT_CPU" "$MAILTRACK" notify --config "$WORK/notify.toml" 2>"$WORK/notify.log" &
    pid=$!
    while :; do
        kill -0 "$pid" 2>/dev/null || die "notify exited: $(tail -3 "$WORK/notify.log")"
        read -r lag pending < <(rcli --no-raw XINFO GROUPS bench:notify 2>/dev/null \
            | awk '/"lag"/ { getline; l = $NF } /"pending"/ { getline; p = $NF } END { print l, p }' | tr -d '"')
        if [ "${lag:-x}" = 0 ] && [ "${pending:-x}" = 0 ]; then break; fi
        sleep 0.02
    done
    end=$(date +%s.%N)
    kill -TERM "$pid"; wait "$pid" || true
    awk -v n="$EVENTS" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f\n", n / (e - s) }'
}

paced_run() { # LINGER_NAME RATE: prints the load script's JSON line
    local pid out
    taskset -c "$SUBJECT_CPU" "$MAILTRACK" notify --config "$WORK/paced-$1.toml" 2>"$WORK/paced-$1.log" &
    pid=$!
    sleep 0.5
    out=$(taskset -c "$OTHER_CPU" python3 "$ROOT/benches/notify_load.py" paced "$P_REDIS" \
        "bench:paced-$1" "$2" "$PACED_SECONDS" "$P_RECEIVER")
    kill -TERM "$pid"; wait "$pid" || true
    echo "$out"
}

main() {
    install_tools
    log "building the release binary"
    cargo build --release --quiet
    MAILTRACK=$ROOT/target/release/mailtrack
    write_configs
    start_redis
    start_nginx
    local round serve notify serve_all=() notify_all=()
    for round in $(seq 1 "$ROUNDS"); do
        serve=$(serve_round)
        notify=$(notify_round)
        log "round $round: serve $serve clicks/s, notify $notify events/s"
        serve_all+=("$serve") notify_all+=("$notify")
    done
    local serve_median notify_median ratio half
    serve_median=$(printf '%s\n' "${serve_all[@]}" | median)
    notify_median=$(printf '%s\n' "${notify_all[@]}" | median)
    ratio=$(awk -v a="$notify_median" -v b="$serve_median" 'BEGIN { printf "%.2f", a / b }')
    half=$(awk -v a="$notify_median" 'BEGIN { printf "%.0f", a / 2 }')
    log "medians: serve $serve_median clicks/s, notify $notify_median events/s, ratio $ratio"
    log "paced at $half events/s for ${PACED_SECONDS}s, linger 500 ms (the default)"
    local paced_default paced_short
    paced_default=$(paced_run default "$half")
    log "  $paced_default"
    log "paced at $half events/s for ${PACED_SECONDS}s, linger $LINGER_MS ms"
    paced_short=$(paced_run short "$half")
    log "  $paced_short"
    mkdir -p "$ROOT/benches/results"
    {
        echo "# notify beside serve, one core each ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
        echo
        echo "| row | per round | median |"
        echo "|---|---|---|"
        echo "| serve clicks/s (Redis sink) | ${serve_all[*]} | $serve_median |"
        echo "| notify events/s (batches of 100) | ${notify_all[*]} | $notify_median |"
        echo "| ratio notify ÷ serve (goal ≥ 3) | | $ratio |"
        echo
        echo "Paced at $half events/s for ${PACED_SECONDS} s, XADD → receiver's answer:"
        echo
        echo "- linger 500 ms (default): \`$paced_default\`"
        echo "- linger $LINGER_MS ms: \`$paced_short\`"
    } | tee "$ROOT/benches/results/notify-latest.md"
}

main "$@"

#!/usr/bin/env bash
# benches/notify.sh: how fast `mailtrack notify` delivers, against how fast serve clicks, on
# one core each, in one run.
#
#   bash benches/notify.sh              # about 2 minutes on 2 cores
#   DURATION=10 PREFILL=2000000 bash benches/notify.sh
#
# Needs the release binary (it runs `cargo build --release --bins --examples`, as compare.sh), redis-server,
# redis-cli, nginx, wrk, python3 and taskset. On 127.0.0.1 only:
#
# 1. Serve's click rate: `mailtrack serve` on core 1 (`taskset -c 1`, the Redis sink,
#    budget_per_minute no run reaches, as compare.sh), wrk on core 0 (one thread, 64
#    keep-alive connections, DURATION s) on one signed click link; Redis on core 0.
# 2. The events serve wrote are the stream notify delivers: real event JSON. When serve wrote
#    fewer than PREFILL, the stream is topped up with copies of its first event (a Lua script,
#    in Redis) to PREFILL, so that the run lasts long enough to measure.
# 3. Notify's rate: `mailtrack notify` on core 1, one endpoint wanting clicks, batches of 100
#    (the default), the default concurrency (4) and linger, to nginx `return 204;` on core 0
#    (one worker; client_max_body_size and client_body_buffer_size big enough for a
#    100-event body, so it is read into memory and discarded). Measured from the first entry
#    the group reads until its lag and pending are both 0 (XINFO GROUPS, every 100 ms).
# 4. The ratio: notify's events a second over serve's clicks a second; the goal is ≥ 3, one
#    notify core keeping up with three serve cores.
# 5. Latency at half of notify's measured rate, or LATENCY_MAX_RATE (50,000/s) if that is
#    less: the Python load, the Python receiver and Redis share core 0, and above about
#    100,000/s they fill it and measure their own queues (one run at 102,000/s: p99 873 ms,
#    the next at 110,000/s: 48 ms; top showed Redis at 47% and the two Python processes at
#    60%). benches/notify_load.py XADDs events at that steady rate for LATENCY_SECONDS to a
#    second stream (a fresh group, so the backlog above is not sent again), each with its
#    eventId made of its stream id; notify (core 1) delivers them to
#    benches/notify_receiver.py (core 0, with the load and Redis), which takes each event's
#    XADD time from its id and records XADD → its answer. p50 and p99, for each linger
#    in LINGERS_MS. The goal: p99 < linger + 50 ms.
#
# Results: benches/results/notify.txt (the summary printed at the end) and notify.env.

set -euo pipefail

DURATION=${DURATION:-5}               # seconds of wrk on serve
PREFILL=${PREFILL:-2000000}           # events in the stream before notify starts: a few
                                      # seconds of it, so that its start (and the 100 ms
                                      # between looks at the group) weighs little
LATENCY_SECONDS=${LATENCY_SECONDS:-10}
LATENCY_MAX_RATE=${LATENCY_MAX_RATE:-50000} # the Python load and receiver's limit on core 0
LINGERS_MS=${LINGERS_MS-"500 50"}     # the default linger, and a short one; "" skips step 5
CONCURRENCY=${CONCURRENCY:-4}         # notify's POSTs in flight (the default)
MACHINES=${MACHINES:-}                # "only": a rule that parses every event (serve's
                                      # events here are machines': curl's and wrk's), where
                                      # events = ["Click"] alone reads the entry's type
SERVE_CPU=1                           # serve, then notify
CLIENT_CPU=0                          # wrk, Redis, nginx, the load and the receiver

P_SERVE=18281 P_SERVE_ADMIN=18282 P_NOTIFY_ADMIN=18283 P_REDIS=16479 P_NGX=18291 P_RECV=18292
STREAM=mailtrack:bench LATENCY_STREAM=mailtrack:latency

cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=$ROOT/benches/results
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

wait_port() { # PORT PID: until something listens on 127.0.0.1:PORT
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || die "the process for port $1 exited (see $WORK)"
        sleep 0.1
    done
    die "nothing listens on port $1"
}

STARTED=""
start() { # NAME CPU PORT COMMAND...: runs COMMAND pinned to CPU; its pid in STARTED
    local name=$1 cpu=$2 port=$3
    shift 3
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is already in use: stop whatever listens there, or change P_* above"
    fi
    taskset -c "$cpu" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_port "$port" "$STARTED"
}

stop() { # PID: SIGTERM, and wait for it
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

rcli() { redis-cli -p "$P_REDIS" "$@"; }

# group_field STREAM GROUP FIELD: a field of XINFO GROUPS for GROUP.
group_field() {
    rcli --raw XINFO GROUPS "$1" | awk -v group="$2" -v field="$3" '
        { line[NR] = $0 }
        END {
            for (i = 1; i <= NR; i++) if (line[i] == "name" && line[i + 1] == group) start = i
            if (!start) exit
            for (i = start; i <= NR; i += 2) {
                if (i > start && line[i] == "name") break
                if (line[i] == field) { print line[i + 1]; exit }
            }
        }'
}

# process_ticks PID: CPU time (user + system, clock ticks) of PID, all its threads.
process_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# core_ticks CPU: "busy total" clock ticks of one core so far (busy: neither idle nor iowait).
core_ticks() {
    awk -v cpu="cpu$1" '$1 == cpu { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# busy "BUSY TOTAL" "BUSY TOTAL": the busy percentage of a core between two core_ticks.
busy() {
    local b1 t1 b2 t2
    read -r b1 t1 <<<"$1"
    read -r b2 t2 <<<"$2"
    awk -v b=$((b2 - b1)) -v t=$((t2 - t1)) 'BEGIN { printf "%.0f%%", (t > 0 ? 100 * b / t : 0) }'
}

# share TICKS_DELTA MS: the percentage of one core that TICKS_DELTA clock ticks are of MS.
share() { awk -v t="$1" -v ms="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f%%", 100 * t / hz * 1000 / ms }'; }

now_ms() { date +%s%3N; }

# config FILE STREAM ENDPOINT_URL LINGER_MS: serve's and notify's config.
config() {
    local machines=""
    [ -z "$MACHINES" ] || machines="machines = \"$MACHINES\""
    cat >"$1" <<TOML
[tracking]
base_url = "http://127.0.0.1:$P_SERVE"
[keys]
file = "keys.toml"
[server]
http = "127.0.0.1:$P_SERVE"
shutdown_grace = 1
[admin]
listen = "127.0.0.1:$4"
[events]
budget_per_minute = 4000000000
sink = "redis"
redis_url = "redis://127.0.0.1:$P_REDIS/0"
stream = "$2"
spool_dir = "spool"
[[notify.endpoint]]
name = "bench"
events = ["Click"]
url = "$3"
secrets_file = "bench.secrets"
allow_private = true
batch_size = 100
concurrency = $CONCURRENCY
linger_ms = $5
$machines
TOML
}

main() {
    for tool in redis-server redis-cli nginx wrk python3 taskset; do
        command -v "$tool" >/dev/null || die "needs $tool"
    done
    [ "$(nproc)" -ge 2 ] || die "needs 2 cores"
    # --examples as compare.sh: the same features as the tests' build, so nothing rebuilds.
    log "building (cargo build --release --bins --examples)"
    cargo build --release --bins --examples
    local mailtrack=${CARGO_TARGET_DIR:-$ROOT/target}/release/mailtrack
    mkdir -p "$RESULTS"
    {
        echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
        echo "cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
        echo "cores=$(nproc)"
        echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "mailtrack=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
        echo "redis=$(redis-server --version | awk '{ print $3 }')"
        echo "duration=${DURATION}s prefill=$PREFILL latency_seconds=$LATENCY_SECONDS lingers_ms=$LINGERS_MS concurrency=$CONCURRENCY machines=${MACHINES:-include}"
    } >"$RESULTS/notify.env"

    cd "$WORK"
    "$mailtrack" keygen --id 1 >keys.toml
    echo "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" >bench.secrets
    export RUST_LOG=warn

    start redis "$CLIENT_CPU" "$P_REDIS" redis-server --port "$P_REDIS" --bind 127.0.0.1 \
        --save "" --appendonly no --dir "$WORK"

    # 1. Serve's click rate on core 1.
    config serve.toml "$STREAM" "http://127.0.0.1:$P_NGX/hook" "$P_SERVE_ADMIN" 500
    start serve "$SERVE_CPU" "$P_SERVE" "$mailtrack" serve --config serve.toml
    local serve_pid=$STARTED link target
    link=$("$mailtrack" sign --config serve.toml --message-id bench-0001 "https://example.com/landing")
    target=${link#http://127.0.0.1:$P_SERVE}
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_SERVE$target")
    [ "$status" = 302 ] || die "serve answered $status to the click"
    log "serve: wrk for ${DURATION}s on core $CLIENT_CPU, serve on core $SERVE_CPU"
    local serve_ticks0 serve_ticks1 core0 core1
    serve_ticks0=$(process_ticks "$serve_pid") core0=$(core_ticks "$SERVE_CPU")
    taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" --latency \
        "http://127.0.0.1:$P_SERVE$target" >wrk.txt 2>&1
    serve_ticks1=$(process_ticks "$serve_pid") core1=$(core_ticks "$SERVE_CPU")
    # How busy the core was, and how much of it serve had: the rest was someone else's.
    local serve_core serve_share
    serve_core=$(busy "$core0" "$core1")
    serve_share=$(share $((serve_ticks1 - serve_ticks0)) $((DURATION * 1000)))
    local serve_rps serve_requests serve_us
    serve_rps=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' wrk.txt)
    serve_requests=$(awk '/requests in/ { print $1 }' wrk.txt)
    serve_us=$(awk -v t=$((serve_ticks1 - serve_ticks0)) -v hz="$(getconf CLK_TCK)" -v n="$serve_requests" \
        'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    stop "$serve_pid"
    local written
    written=$(rcli XLEN "$STREAM")
    log "serve: $serve_rps clicks/s, $serve_us µs of serve CPU a click; $written events in the stream"

    # 2. Top up to PREFILL with copies of serve's first event.
    if [ "$written" -lt "$PREFILL" ]; then
        local script='local e = redis.call("XRANGE", KEYS[1], "-", "+", "COUNT", 1)[1][2]
            for i = 1, tonumber(ARGV[1]) do redis.call("XADD", KEYS[1], "*", unpack(e)) end
            return redis.call("XLEN", KEYS[1])'
        local left=$((PREFILL - written)) chunk
        while [ "$left" -gt 0 ]; do
            chunk=$((left < 20000 ? left : 20000))
            rcli EVAL "$script" 1 "$STREAM" "$chunk" >/dev/null
            left=$((left - chunk))
        done
    fi
    local total
    total=$(rcli XLEN "$STREAM")
    log "stream: $total events ($written from serve, $((total - written)) copies of its first)"
    rcli --raw XRANGE "$STREAM" - + COUNT 1 | sed -n '3p' >template.json

    # 3. Notify's rate on core 1, to nginx on core 0.
    mkdir -p nginx/tmp
    cat >nginx/nginx.conf <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$P_NGX;
        client_max_body_size 16m;
        client_body_buffer_size 1m;
        location / { return 204; }
    }
}
NGINX
    start nginx "$CLIENT_CPU" "$P_NGX" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
    local nginx_pid=$STARTED
    local body_status
    body_status=$(head -c 100000 /dev/zero | curl -s -o /dev/null -w '%{http_code}' \
        --data-binary @- "http://127.0.0.1:$P_NGX/hook")
    [ "$body_status" = 204 ] || die "nginx answered $body_status to a 100 kB POST"
    config notify.toml "$STREAM" "http://127.0.0.1:$P_NGX/hook" "$P_NOTIFY_ADMIN" 500
    log "notify: delivering $total events, notify on core $SERVE_CPU, nginx on core $CLIENT_CPU"
    taskset -c "$SERVE_CPU" "$mailtrack" notify --config notify.toml >notify.out 2>notify.err &
    local notify_pid=$!
    PIDS+=("$notify_pid")
    local group=mailtrack-notify:bench read=0 t0="" read0=0 ticks0=0 lag pending client0 client1
    for _ in $(seq 1 6000); do
        kill -0 "$notify_pid" 2>/dev/null || die "notify exited: $(tail -3 notify.err)"
        read=$(group_field "$STREAM" "$group" entries-read)
        if [ -z "$t0" ] && [ -n "$read" ] && [ "$read" != 0 ]; then
            t0=$(now_ms) read0=$read ticks0=$(process_ticks "$notify_pid") core0=$(core_ticks "$SERVE_CPU")
            client0=$(core_ticks "$CLIENT_CPU")
        fi
        if [ -n "$t0" ]; then
            lag=$(group_field "$STREAM" "$group" lag)
            pending=$(group_field "$STREAM" "$group" pending)
            [ "$lag" = 0 ] && [ "$pending" = 0 ] && break
        fi
        sleep 0.1
    done
    local t1 ticks1
    t1=$(now_ms) ticks1=$(process_ticks "$notify_pid") core1=$(core_ticks "$SERVE_CPU")
    client1=$(core_ticks "$CLIENT_CPU")
    local notify_core notify_share client_core
    notify_core=$(busy "$core0" "$core1")
    client_core=$(busy "$client0" "$client1")
    notify_share=$(share $((ticks1 - ticks0)) $((t1 - t0)))
    [ "${lag:-}" = 0 ] && [ "${pending:-}" = 0 ] || die "notify did not catch up (lag $lag, pending $pending)"
    local notify_rate cpu_us
    notify_rate=$(awk -v n=$((total - read0)) -v ms=$((t1 - t0)) 'BEGIN { printf "%.0f", n * 1000 / ms }')
    cpu_us=$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" -v n=$((total - read0)) \
        'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    local dead
    dead=$(rcli XLEN "$STREAM:notify:bench:dead")
    log "notify: $((total - read0)) events in $((t1 - t0)) ms: $notify_rate events/s, $cpu_us µs of CPU each; $dead dead letters"
    stop "$notify_pid"
    stop "$nginx_pid"

    # 5. Latency at half of notify's rate (at most LATENCY_MAX_RATE), to the Python receiver.
    local half=$((notify_rate / 2)) linger
    [ "$half" -le "$LATENCY_MAX_RATE" ] || half=$LATENCY_MAX_RATE
    lines=()
    for linger in $LINGERS_MS; do
        rcli DEL "$LATENCY_STREAM" >/dev/null
        start receiver "$CLIENT_CPU" "$P_RECV" python3 "$ROOT/benches/notify_receiver.py" \
            "$P_RECV" "$WORK/latency-$linger.txt"
        local receiver_pid=$STARTED
        config latency.toml "$LATENCY_STREAM" "http://127.0.0.1:$P_RECV/hook" "$P_NOTIFY_ADMIN" "$linger"
        taskset -c "$SERVE_CPU" "$mailtrack" notify --config latency.toml >latency-notify.out 2>latency-notify.err &
        notify_pid=$!
        PIDS+=("$notify_pid")
        # The group exists once notify has started; wait for it.
        for _ in $(seq 1 100); do
            rcli --raw XINFO GROUPS "$LATENCY_STREAM" 2>/dev/null | grep -qx mailtrack-notify:bench && break
            sleep 0.1
        done
        log "latency: $half events/s for ${LATENCY_SECONDS}s, linger $linger ms"
        local reached
        reached=$(taskset -c "$CLIENT_CPU" python3 "$ROOT/benches/notify_load.py" "$P_REDIS" \
            "$LATENCY_STREAM" "$half" "$LATENCY_SECONDS" template.json)
        for _ in $(seq 1 300); do
            lag=$(group_field "$LATENCY_STREAM" mailtrack-notify:bench lag)
            pending=$(group_field "$LATENCY_STREAM" mailtrack-notify:bench pending)
            [ "$lag" = 0 ] && [ "$pending" = 0 ] && break
            sleep 0.1
        done
        stop "$notify_pid"
        stop "$receiver_pid"
        local summary
        summary=$(sort -n "$WORK/latency-$linger.txt" | awk -v linger="$linger" -v rate="$reached" '
            { v[NR] = $1 }
            END {
                p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
                printf "linger %s ms: %d events at %s/s, XADD -> answer p50 %.1f ms, p99 %.1f ms, max %.1f ms (goal p99 < %d ms: %s)",
                    linger, NR, rate, p50, p99, v[NR], linger + 50, (p99 < linger + 50 ? "met" : "missed")
            }')
        log "latency: $summary"
        lines+=("$summary")
    done

    local ratio cpu_ratio
    ratio=$(awk -v n="$notify_rate" -v s="$serve_rps" 'BEGIN { printf "%.2f", n / s }')
    cpu_ratio=$(awk -v n="$cpu_us" -v s="$serve_us" 'BEGIN { printf "%.2f", s / n }')
    {
        echo "serve (core $SERVE_CPU, Redis sink, wrk -t1 -c64 -d${DURATION}s on core $CLIENT_CPU): $serve_rps clicks/s, $serve_us µs of serve CPU a click; core $SERVE_CPU busy $serve_core, serve $serve_share of it"
        echo "notify (core $SERVE_CPU, batches of 100, concurrency $CONCURRENCY, nginx return 204 on core $CLIENT_CPU): $notify_rate events/s over $((total - read0)) events ($((t1 - t0)) ms), $cpu_us µs of notify CPU an event, $dead dead letters; core $SERVE_CPU busy $notify_core, notify $notify_share of it; core $CLIENT_CPU (Redis, nginx) busy $client_core"
        echo "ratio notify events/s / serve clicks/s: $ratio (goal >= 3: $(awk -v r="$ratio" 'BEGIN { print (r >= 3 ? "met" : "missed") }'))"
        echo "per CPU-second (serve's CPU a click / notify's CPU an event): $cpu_ratio"
        [ ${#lines[@]} -eq 0 ] || printf '%s\n' "${lines[@]}"
    } | tee "$RESULTS/notify.txt"
}

main "$@"

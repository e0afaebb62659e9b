#!/usr/bin/env bash
# benches/compare.sh: mailtrack side by side with its peers, on this machine, in one run.
#
#   bash benches/compare.sh            # about 6 minutes on 2 cores
#   ROUNDS=5 DURATION=5 bash benches/compare.sh
#
# Builds the release binary and examples, installs what it lacks on Debian (wrk, nginx with
# the Lua module, redis-server, openssl, python3), then measures, against 127.0.0.1 only:
#
#   HTTP, keep-alive     mailtrack click (file sink), the same with the classifier off,
#                        mailtrack click (Redis sink), mailtrack on the 139 mail form, bare
#                        hyper 302, nginx `return 302`, nginx+Lua /CL0 fallback
#   HTTPS, keep-alive    mailtrack click, bare hyper, nginx `return 302`, nginx+Lua
#   new TLS connections  one handshake + one request + close (`Connection: close`): mailtrack,
#                        bare hyper, nginx
#   half load            mailtrack's p99 at half of its peak in the same round (see below)
#   memory               mailtrack's VmRSS with 10,000 idle keep-alive connections
#
# Every run also records the server process's CPU time and how busy each core was, so that a
# row limited by wrk rather than by its server shows as such (see run_wrk).
#
# Every server gets the very request a mail client sends for a click: the signed link's
# request-target, which is 100-odd bytes, not `/`. The fixed-302 servers ignore it, but they
# read and parse it as mailtrack does, so that a ratio to them is the cost of what mailtrack
# does with the request (decode, verify, record), not of the request's size. (Answering `/`
# made the bare hyper floor about 2% faster: 6.32 against 6.45 µs a request.)
#
# Every mailtrack classifies each click (docs/machines.md) with an Apple-sized egress list of
# 300,000 prefixes loaded (benches/apple_egress.py), except the row that turns the classifier
# off: its ratio to the file-sink row is what the classifier costs a click. Every request
# carries a desktop Chrome user agent, as a person's click does (wrk sends none by itself,
# which the classifier would mark), and the link was sent an hour ago.
#
# Every server runs pinned to core 0 (`taskset -c 0`); wrk and the other clients run on core 1.
# nginx has one worker. Every row is measured in each of ROUNDS rounds, the rows of a round
# back to back (and in reverse order every other round), so a peer is always measured within
# seconds of its row; the report takes each row's median and compares rows by ratio.
#
# Half load: wrk is closed-loop and Debian has no wrk2, so the rate-limited run uses wrk's Lua
# `delay()` hook: each of C connections waits DELAY_MS (1 ms) after every answer before the
# next request, for about C * 1000 / (DELAY_MS + 0.4) requests per second (0.4 ms: the round
# trip and wrk's timer); C is chosen from the round's peak. The rate actually reached is
# reported beside the p99. Few connections with a short pause, not many with a long one: with
# hundreds of paced connections wrk's own timer list adds milliseconds to what it measures
# (a bare hyper server at 30k req/s: p99 3 ms with 400 connections paced at 10 ms, 0.26 ms
# with 45 paced at 1 ms).
#
# TLS session resumption: wrk keeps each connection's TLS session when it reconnects, and
# offers it. mailtrack's rustls keeps a server-side session cache (no stateless tickets), so
# nginx is given the same (`ssl_session_cache shared`, `ssl_session_tickets off`): resumption
# is on, and equal, on both sides. SESSION_CACHE=off turns nginx's off for comparison. The
# script counts the TCP connections the kernel accepted during each new-connection run
# (PassiveOpens) to check that every request had its own connection.
#
# Results: benches/results/latest.tsv (every run of wrk), latest.json and latest.md (the
# medians, ratios and goals) and chart.svg; see benches/chart.py.

set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}           # seconds per wrk run
CONNECTIONS=${CONNECTIONS:-64}    # keep-alive connections for the peak runs
NEW_CONN_CONNECTIONS=${NEW_CONN_CONNECTIONS:-32}
DELAY_MS=${DELAY_MS:-1}           # the half-load runs' pause per connection between requests
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
SESSION_CACHE=${SESSION_CACHE:-shared:bench:10m}
SERVER_CPU=0
CLIENT_CPU=1
# A person's click: desktop Chrome.
USER_AGENT='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'


# Ports on 127.0.0.1; each mailtrack has an admin port of its own, for /metrics.
P_MT=18081 P_MT_TLS=18443 P_MT_REDIS=18082 P_MT_IDLE=18083 P_MT_UNCLASSIFIED=18084
P_MT_ADMIN=18181 P_MT_REDIS_ADMIN=18182 P_MT_IDLE_ADMIN=18183 P_MT_UNCLASSIFIED_ADMIN=18184
P_BARE=18091 P_BARE_TLS=18444
P_NGX=18101 P_NGX_LUA=18102 P_NGX_TLS=18445 P_NGX_TLS_CHECK=18446 P_NGX_LUA_TLS=18447
P_REDIS=16379

cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=$ROOT/benches/results
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailtrack-bench.XXXXXX")
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

# ---------------------------------------------------------------------------------------------
# Tools.

nginx_modules_dir() {
    local dir
    for dir in /usr/share/nginx/modules /usr/lib/nginx/modules; do
        if [ -f "$dir/ngx_http_lua_module.so" ]; then echo "$dir"; return 0; fi
    done
    return 1
}

install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || missing+=(nginx)
    nginx_modules_dir >/dev/null || missing+=(libnginx-mod-http-lua)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v python3 >/dev/null || missing+=(python3)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v curl >/dev/null || missing+=(curl)
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null || die "missing ${missing[*]}, and this is not Debian"
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

# ---------------------------------------------------------------------------------------------
# Servers.

wait_port() { # PORT [PID]: until something listens on 127.0.0.1:PORT
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then die "the server for port $1 exited"; fi
        sleep 0.1
    done
    die "nothing listens on port $1"
}

STARTED=""
start() { # NAME PORT COMMAND...: starts a server pinned to the server core; its pid in STARTED
    local name=$1 port=$2
    shift 2
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is already in use: stop whatever listens there, or change P_* above"
    fi
    taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_port "$port" "$STARTED"
}

make_certificate() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
}

# mailtrack_config FILE HTTP_PORT ADMIN_PORT [HTTPS_PORT] [SINK]: a bench config beside the
# key ring.
mailtrack_config() {
    local file=$1 http=$2 admin=$3 https=${4:-} sink=${5:-file} name
    name=$(basename "$file" .toml)
    {
        echo '[tracking]'
        echo "base_url = \"http://127.0.0.1:$http\""
        echo '[keys]'
        echo 'file = "keys.toml"'
        echo '[server]'
        echo "http = \"127.0.0.1:$http\""
        [ -n "$https" ] && echo "https = \"127.0.0.1:$https\""
        # Room for the 10,000 idle connections, and long enough that they stay open. Every
        # client here is 127.0.0.1: the per-client cap is as high, so it is counted (its cost
        # is in every row) but never reached.
        echo 'max_connections = 50000'
        echo 'max_connections_per_ip = 50000'
        echo 'header_read_timeout = 600'
        echo 'idle_timeout = 600'
        echo 'shutdown_grace = 1'
        echo '[admin]'
        echo "listen = \"127.0.0.1:$admin\""
        if [ -n "$https" ]; then
            echo '[[tls.certificate]]'
            echo 'cert = "cert.pem"'
            echo 'key = "key.pem"'
        fi
        echo '[events]'
        # One client hammers one link here. With the default budget (300 events a minute per
        # message and client) nearly every click would be answered without its event, and the
        # row would be fast for recording nothing. A budget no run reaches still takes the
        # budget's path (hash, lock, table) on every click, and records every event.
        echo 'budget_per_minute = 4000000000'
        echo "sink = \"$sink\""
        echo "file = \"data-$name/events.jsonl\""
        echo "spool_dir = \"data-$name/spool\""
        if [ "$sink" = redis ]; then
            echo "redis_url = \"redis://127.0.0.1:$P_REDIS/0\""
            echo 'stream = "mailtrack:bench"'
        fi
        echo '[classify]'
        if [ "$name" = unclassified ]; then
            echo 'enabled = false'
        else
            echo 'apple_egress = "apple-egress.csv"'
        fi
    } >"$file"
}

start_nginx() {
    local modules
    modules=$(nginx_modules_dir) || die "no ngx_http_lua_module.so"
    mkdir -p "$WORK/nginx/tmp" "$WORK/nginx/lua"
    # nginx started as root runs its worker as an unprivileged user, which must read the Lua.
    chmod 755 "$WORK" "$WORK/nginx" "$WORK/nginx/lua"
    cp "$ROOT/benches/nginx/cl0_fallback.lua" "$WORK/nginx/lua/"
    sed -e "s|@MODULES@|$modules|g" -e "s|@PREFIX@|$WORK/nginx|g" \
        -e "s|@LUA_DIR@|$WORK/nginx/lua|g" -e "s|@CERT@|$WORK/cert.pem|g" \
        -e "s|@KEY@|$WORK/key.pem|g" -e "s|@PORT_RETURN@|$P_NGX|g" \
        -e "s|@PORT_LUA@|$P_NGX_LUA|g" -e "s|@PORT_TLS@|$P_NGX_TLS|g" \
        -e "s|@PORT_TLS_CHECK@|$P_NGX_TLS_CHECK|g" -e "s|@PORT_LUA_TLS@|$P_NGX_LUA_TLS|g" \
        -e "s|@SESSION_CACHE@|$SESSION_CACHE|g" \
        "$ROOT/benches/nginx/nginx.conf.template" >"$WORK/nginx/nginx.conf"
    start nginx "$P_NGX_TLS" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
}

# ---------------------------------------------------------------------------------------------
# Measuring.

passive_opens() { awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "PassiveOpens") c = i; h = 1 } else print $c }' /proc/net/snmp; }

# The server process behind each row, for its CPU time: row name -> pid (nginx: the master,
# whose workers are counted with it).
declare -A ROW_PID=()

# process_ticks PID: CPU time (user + system, in clock ticks) of PID, all its threads, and
# its child processes (nginx's workers).
process_ticks() {
    local pid total=0 t
    for pid in "$1" $(pgrep -P "$1" 2>/dev/null); do
        t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || continue
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# core_ticks CPU: "busy total" clock ticks of one core so far (busy: neither idle nor iowait).
core_ticks() {
    awk -v cpu="cpu$1" '$1 == cpu { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# run_wrk ROUND ROW URL [wrk options...]: one wrk run on the client core, appended to the TSV
# as: round, row, requests/s, p50 ms, p99 ms, requests, socket errors, non-3xx answers,
# TCP connections accepted, the server process's CPU seconds, and the busy share of the
# server core and of the client core. A server whose core is not busy while wrk's is was
# waiting for wrk: that row measures the client as much as the server, and its CPU seconds
# per request are the fairer comparison.
run_wrk() {
    local round=$1 row=$2 url=$3 out before after pid cpu_before cpu_after
    local server_before server_after client_before client_after
    shift 3
    out="$WORK/wrk-$row-$round.txt"
    pid=${ROW_PID[$row]:-}
    before=$(passive_opens)
    cpu_before=$([ -n "$pid" ] && process_ticks "$pid" || echo 0)
    server_before=$(core_ticks "$SERVER_CPU") client_before=$(core_ticks "$CLIENT_CPU")
    taskset -c "$CLIENT_CPU" wrk -t1 -d"${DURATION}s" --latency -H "User-Agent: $USER_AGENT" "$@" "$url" >"$out" 2>&1 || true
    server_after=$(core_ticks "$SERVER_CPU") client_after=$(core_ticks "$CLIENT_CPU")
    cpu_after=$([ -n "$pid" ] && process_ticks "$pid" || echo 0)
    after=$(passive_opens)
    awk -v round="$round" -v row="$row" -v accepted=$((after - before)) \
        -v cpu_s="$(awk -v t=$((cpu_after - cpu_before)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / hz }')" \
        -v server_busy="$(share "$server_before" "$server_after")" \
        -v client_busy="$(share "$client_before" "$client_after")" '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000
            return v + 0
        }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /requests in/ { requests = $1 }
        /Requests\/sec/ { rps = $2 }
        /Socket errors/ { gsub(/,/, ""); errors = $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx/ { non3xx = $5 }
        END { printf "%s\t%s\t%.0f\t%.3f\t%.3f\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n",
              round, row, rps, p50, p99, requests, errors, non3xx, accepted, cpu_s,
              server_busy, client_busy }
    ' "$out" | tee -a "$RESULTS/latest.tsv" | awk -F'\t' '{ printf "  %-22s %9s req/s  p50 %7s ms  p99 %7s ms  errors %s  non-3xx %s  server %.1f us/req  cores busy %s/%s\n", $2, $3, $4, $5, $7, $8, ($6 > 0 ? $10 * 1e6 / $6 : 0), $11, $12 }' >&2
}

# share "BUSY TOTAL" "BUSY TOTAL": the busy fraction of a core between two core_ticks.
share() {
    local b1 t1 b2 t2
    read -r b1 t1 <<<"$1"
    read -r b2 t2 <<<"$2"
    awk -v b=$((b2 - b1)) -v t=$((t2 - t1)) 'BEGIN { printf "%.2f", (t > 0 ? b / t : 0) }'
}

check_redirect() { # NAME URL EXPECTED_LOCATION
    local got
    got=$(curl -sk -o /dev/null -w '%{http_code} %{redirect_url}' "$2")
    [ "$got" = "302 $3" ] || die "$1: expected 302 to $3, got: $got"
}

# ---------------------------------------------------------------------------------------------

main() {
    install_tools
    log "building (cargo build --release --bins --examples)"
    cargo build --release --bins --examples
    # cargo's own default, target/, unless CARGO_TARGET_DIR says otherwise.
    local target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
    local mailtrack=$target_dir/release/mailtrack bare=$target_dir/release/examples/bare_redirect
    # Each side of the 10,000 idle connections needs a descriptor per connection: raise the
    # soft limit as far as the hard limit allows.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((IDLE_CONNECTIONS + 1000)) ] \
        || die "open-file limit $(ulimit -n) is too low for $IDLE_CONNECTIONS connections"
    [ "$(nproc)" -ge 2 ] || die "needs 2 cores: servers on core 0, clients on core 1"
    mkdir -p "$RESULTS"
    : >"$RESULTS/latest.tsv"

    # The note that goes with the results: when, where, and what else was running.
    {
        echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
        echo "cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
        echo "cores=$(nproc)"
        echo "kernel=$(uname -r)"
        echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "mailtrack=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
        echo "wrk=$(wrk --version 2>&1 | head -1 | awk '{ print $2 }')"
        echo "nginx=$(nginx -v 2>&1 | sed 's|.*/||')"
        echo "rounds=$ROUNDS duration=${DURATION}s connections=$CONNECTIONS"
        echo "session_cache=$SESSION_CACHE"
    } >"$RESULTS/latest.env"

    make_certificate
    "$mailtrack" keygen --id 1 >"$WORK/keys.toml"
    mailtrack_config "$WORK/file.toml" "$P_MT" "$P_MT_ADMIN" "$P_MT_TLS" file
    mailtrack_config "$WORK/redis.toml" "$P_MT_REDIS" "$P_MT_REDIS_ADMIN" "" redis
    mailtrack_config "$WORK/idle.toml" "$P_MT_IDLE" "$P_MT_IDLE_ADMIN" "" file
    mailtrack_config "$WORK/unclassified.toml" "$P_MT_UNCLASSIFIED" "$P_MT_UNCLASSIFIED_ADMIN" "" file
    python3 "$ROOT/benches/apple_egress.py" >"$WORK/apple-egress.csv"

    # The links: one canonical, one in the 139 mail form (the path decoded once, as
    # `mailtrack::testing::Mangling::ClientDecodedOnce` makes it), checked with `decode`.
    local destination='https://example.com/welcome?utm_source=newsletter'
    local link target target139
    link=$("$mailtrack" sign --config "$WORK/file.toml" --message-id bench-0001 \
        --send-time "$(($(date +%s) - 3600))" "$destination")
    target=/${link#http://*/}
    target139=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.unquote(sys.argv[1]))' "$target")
    "$mailtrack" decode --config "$WORK/file.toml" "$target139" >"$WORK/decode139.json" \
        || die "the 139 form did not verify: $(cat "$WORK/decode139.json")"
    log "canonical: $target"
    log "139 mail:  $target139 ($(python3 -c 'import json,sys; print("repair:", json.load(open(sys.argv[1]))["repair"])' "$WORK/decode139.json"))"

    # Servers: all pinned to the server core; idle ones cost nothing.
    log "starting servers"
    taskset -c "$CLIENT_CPU" redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$WORK" >"$WORK/redis.out" 2>&1 &
    PIDS+=($!)
    wait_port "$P_REDIS" $!
    export RUST_LOG=warn
    start mailtrack "$P_MT_TLS" "$mailtrack" serve --config "$WORK/file.toml"
    local row
    for row in mailtrack_file mailtrack_139 mailtrack_https mailtrack_newtls mailtrack_half_load; do
        ROW_PID[$row]=$STARTED
    done
    local redis_row=mailtrack_redis
    if "$mailtrack" sign --config "$WORK/redis.toml" --message-id check "$destination" >/dev/null 2>"$WORK/redis-config.err"; then
        start mailtrack-redis "$P_MT_REDIS" "$mailtrack" serve --config "$WORK/redis.toml"
        ROW_PID[mailtrack_redis]=$STARTED
    else
        redis_row=""
        log "NOTE: [events] sink = \"redis\" is not accepted yet: $(cat "$WORK/redis-config.err"); skipping that row"
    fi
    start mailtrack-unclassified "$P_MT_UNCLASSIFIED" "$mailtrack" serve --config "$WORK/unclassified.toml"
    ROW_PID[mailtrack_unclassified]=$STARTED
    start bare "$P_BARE" "$bare" "127.0.0.1:$P_BARE"
    ROW_PID[bare_hyper]=$STARTED ROW_PID[bare_hyper_half_load]=$STARTED
    start bare-tls "$P_BARE_TLS" "$bare" "127.0.0.1:$P_BARE_TLS" --tls "$WORK/cert.pem" "$WORK/key.pem"
    ROW_PID[bare_hyper_https]=$STARTED ROW_PID[bare_hyper_newtls]=$STARTED
    start_nginx
    for row in nginx_return nginx_lua nginx_return_https nginx_lua_https nginx_newtls; do
        ROW_PID[$row]=$STARTED
    done

    check_redirect mailtrack "http://127.0.0.1:$P_MT$target" "$destination"
    check_redirect mailtrack-139 "http://127.0.0.1:$P_MT$target139" "$destination"
    check_redirect mailtrack-https "https://127.0.0.1:$P_MT_TLS$target" "$destination"
    if [ -n "$redis_row" ]; then
        check_redirect mailtrack-redis "http://127.0.0.1:$P_MT_REDIS$target" "$destination"
    fi
    check_redirect mailtrack-unclassified "http://127.0.0.1:$P_MT_UNCLASSIFIED$target" "$destination"
    check_redirect bare "http://127.0.0.1:$P_BARE$target" "$destination"
    check_redirect bare-https "https://127.0.0.1:$P_BARE_TLS$target" "$destination"
    check_redirect nginx "http://127.0.0.1:$P_NGX$target" "$destination"
    check_redirect nginx-lua "http://127.0.0.1:$P_NGX_LUA$target" "$destination"
    check_redirect nginx-https "https://127.0.0.1:$P_NGX_TLS$target" "$destination"
    check_redirect nginx-lua-https "https://127.0.0.1:$P_NGX_LUA_TLS$target" "$destination"

    # The half-load runs' pacing, for wrk's Lua hook.
    printf 'function delay()\n    return %d\nend\n' "$DELAY_MS" >"$WORK/paced.lua"

    # name|url|extra wrk options: the keep-alive and new-connection rows of one round.
    local close='Connection: close'
    local rows=(
        "mailtrack_file|http://127.0.0.1:$P_MT$target|"
        "mailtrack_unclassified|http://127.0.0.1:$P_MT_UNCLASSIFIED$target|"
        "mailtrack_139|http://127.0.0.1:$P_MT$target139|"
        "bare_hyper|http://127.0.0.1:$P_BARE$target|"
        "nginx_return|http://127.0.0.1:$P_NGX$target|"
        "nginx_lua|http://127.0.0.1:$P_NGX_LUA$target|"
        "mailtrack_https|https://127.0.0.1:$P_MT_TLS$target|"
        "bare_hyper_https|https://127.0.0.1:$P_BARE_TLS$target|"
        "nginx_return_https|https://127.0.0.1:$P_NGX_TLS$target|"
        "nginx_lua_https|https://127.0.0.1:$P_NGX_LUA_TLS$target|"
        "mailtrack_newtls|https://127.0.0.1:$P_MT_TLS$target|close"
        "bare_hyper_newtls|https://127.0.0.1:$P_BARE_TLS$target|close"
        "nginx_newtls|https://127.0.0.1:$P_NGX_TLS$target|close"
    )
    if [ -n "$redis_row" ]; then
        # After the classifier-off row, which stays beside the file-sink row it is compared with.
        rows=("${rows[@]:0:2}" "mailtrack_redis|http://127.0.0.1:$P_MT_REDIS$target|" "${rows[@]:2}")
    fi

    # Does wrk resume TLS sessions on its new connections? nginx logs it on a side port.
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$NEW_CONN_CONNECTIONS" -d1s -H "$close" \
        "https://127.0.0.1:$P_NGX_TLS_CHECK/" >/dev/null 2>&1 || true
    local resumed total
    resumed=$(grep -c '^r ' "$WORK/nginx/resumed.log" || true)
    total=$(wc -l <"$WORK/nginx/resumed.log")
    echo "tls_resumed=$resumed of $total new connections ($(awk '{ print $2 }' "$WORK/nginx/resumed.log" | sort | uniq -c | tr -s ' ' | tr '\n' ' '))" \
        >>"$RESULTS/latest.env"
    log "wrk resumed the TLS session on $resumed of $total new connections (nginx, ssl_session_cache $SESSION_CACHE)"

    log "warming up"
    local spec name url extra
    for spec in "${rows[@]}"; do
        IFS='|' read -r name url extra <<<"$spec"
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d1s "$url" >/dev/null 2>&1 || true
    done

    local round order peak paced
    for round in $(seq 1 "$ROUNDS"); do
        log "round $round of $ROUNDS"
        order=("${rows[@]}")
        if [ $((round % 2)) -eq 0 ]; then
            order=()
            for ((i = ${#rows[@]} - 1; i >= 0; i--)); do order+=("${rows[$i]}"); done
        fi
        for spec in "${order[@]}"; do
            IFS='|' read -r name url extra <<<"$spec"
            if [ "$extra" = close ]; then
                run_wrk "$round" "$name" "$url" -c"$NEW_CONN_CONNECTIONS" -H "$close"
            else
                run_wrk "$round" "$name" "$url" -c"$CONNECTIONS"
            fi
        done
        # Half of this round's peak, paced (see the top of this file).
        peak=$(awk -F'\t' -v r="$round" '$1 == r && $2 == "mailtrack_file" { print $3 }' "$RESULTS/latest.tsv")
        paced=$(awk -v p="$peak" -v d="$DELAY_MS" 'BEGIN { printf "%d", p / 2 * (d + 0.4) / 1000 + 0.5 }')
        [ "$paced" -ge 1 ] || paced=1
        run_wrk "$round" mailtrack_half_load "http://127.0.0.1:$P_MT$target" -c"$paced" -s "$WORK/paced.lua"
        run_wrk "$round" bare_hyper_half_load "http://127.0.0.1:$P_BARE$target" -c"$paced" -s "$WORK/paced.lua"
    done

    # Where the events went: the Redis stream, the JSONL file, or standard output.
    {
        # The file sink rotates at file_max_bytes: count every part.
        echo "events_file_lines=$(cat "$WORK"/data-file/events.jsonl* 2>/dev/null | wc -l)"
        # mailtrack's own count: anything spooled or dropped would make a row look faster.
        echo "events_file_metrics=$(curl -s "http://127.0.0.1:$P_MT_ADMIN/metrics" | grep -E '^mailtrack_events_(delivered|spooled|dropped)' | tr '\n' ' ')"
        if [ -n "$redis_row" ]; then
            echo "events_redis_metrics=$(curl -s "http://127.0.0.1:$P_MT_REDIS_ADMIN/metrics" | grep -E '^mailtrack_events_(delivered|spooled|dropped)' | tr '\n' ' ')"
        fi
        echo "events_stdout_lines=$(wc -l <"$WORK/mailtrack.out")"
        echo "redis_stream_length=$(redis-cli -p "$P_REDIS" XLEN mailtrack:bench 2>/dev/null || echo 0)"
        echo "redis_row=${redis_row:-skipped}"
        echo "events_redis_stdout_lines=$(wc -l <"$WORK/mailtrack-redis.out" 2>/dev/null || echo 0)"
    } >>"$RESULTS/latest.env"

    measure_idle "$mailtrack" "$target"
    echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/latest.env"

    python3 "$ROOT/benches/chart.py" "$RESULTS"
}

# measure_idle MAILTRACK TARGET: mailtrack's VmRSS before and with IDLE_CONNECTIONS idle
# keep-alive connections, each of which has made one click request.
measure_idle() {
    local mailtrack=$1 target=$2 pid client rss_before rss_idle line i
    start mailtrack-idle "$P_MT_IDLE" "$mailtrack" serve --config "$WORK/idle.toml"
    pid=$STARTED
    # One request first, so the runtime and the decoder have warmed up as in service.
    curl -s -o /dev/null "http://127.0.0.1:$P_MT_IDLE$target"
    rss_before=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
    log "opening $IDLE_CONNECTIONS idle connections to mailtrack"
    taskset -c "$CLIENT_CPU" python3 "$ROOT/benches/idle_connections.py" --port "$P_MT_IDLE" \
        --count "$IDLE_CONNECTIONS" --path "$target" --hold 60 >"$WORK/idle.out" 2>"$WORK/idle.err" &
    client=$!
    PIDS+=("$client")
    for i in $(seq 1 600); do
        line=$(cat "$WORK/idle.out")
        [ -n "$line" ] && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$line" ] || die "idle_connections.py: $(cat "$WORK/idle.err")"
    sleep 2 # let the server settle after the last answer
    rss_idle=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
    local established
    established=$(ss -Htn state established "( sport = :$P_MT_IDLE )" | wc -l)
    log "idle: $line; established $established; VmRSS $rss_before kB -> $rss_idle kB"
    {
        echo "idle_connections_requested=$IDLE_CONNECTIONS"
        echo "idle_client=$line"
        echo "idle_established=$established"
        echo "idle_rss_before_kb=$rss_before"
        echo "idle_rss_kb=$rss_idle"
    } >>"$RESULTS/latest.env"
    kill "$client" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
}

main "$@"

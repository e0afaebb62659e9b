#!/usr/bin/env bash
# benches/classify_click.sh: what the classifier costs a served click, end to end, in one run.
#
#   bash benches/classify_click.sh                  # about 3 minutes
#   ROUNDS=8 DURATION=5 CALLGRIND=0 bash benches/classify_click.sh
#
# Two `mailtrack serve` processes, alike but for `[classify] enabled`, both with a synthetic
# Apple-sized egress list of 300,000 prefixes loaded (benches/apple_egress.py). Every
# request is the same version 2 click, sent an hour before, with a desktop Chrome user agent:
# a person's click, the common case. Two measures, each a ratio inside this run:
#
#   CPU per click    wrk (keep-alive, 64 connections) on core 1, the servers on core 0, in
#                    ROUNDS rounds, the two servers back to back and in alternate order each
#                    round; a server's CPU time (user + system, /proc/PID/stat) over its run,
#                    divided by the clicks answered. Each round's two runs are seconds apart,
#                    so the report's figure is the median of the rounds' own ratios; the
#                    median of each server's runs is printed beside it.
#   instructions     the same clicks under callgrind (CALLGRIND=0 skips it): user-space
#                    instructions per click, counted from after start-up (the list's loading
#                    is not a click's), with the clicks paced alike on both servers (wrk's
#                    delay hook) so that per-second work such as the event writer's batches
#                    falls alike. Instruction counts do not move with what else the machine
#                    runs, which the CPU times on a shared machine do; they leave out the
#                    kernel's share of a click (TCP, the events file), which the classifier
#                    does not add to but for the verdict's 60-odd bytes of each event.
#
# The goal (issue 16): the classifier costs at most 5% of a click's CPU.

set -euo pipefail

ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5}
CALLGRIND=${CALLGRIND:-1}
CALLGRIND_SECONDS=${CALLGRIND_SECONDS:-20}
SERVER_CPU=0
CLIENT_CPU=1
USER_AGENT='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
P_ON=18281 P_ON_ADMIN=18381 P_OFF=18282 P_OFF_ADMIN=18382

cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "[classify_click] $*" >&2; }
die() { log "$*"; exit 1; }

need() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v python3 >/dev/null || missing+=(python3)
    if [ "$CALLGRIND" = 1 ]; then command -v valgrind >/dev/null || missing+=(valgrind); fi
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# config NAME HTTP_PORT ADMIN_PORT ENABLED
config() {
    cat >"$WORK/$1.toml" <<EOF
[tracking]
base_url = "http://127.0.0.1:$2"
[keys]
file = "keys.toml"
[server]
http = "127.0.0.1:$2"
max_connections = 50000
max_connections_per_ip = 50000
[admin]
listen = "127.0.0.1:$3"
[events]
# One client clicks one link over and over: a budget no run reaches, so every click is
# recorded (the budget's own work is in both).
budget_per_minute = 4000000000
file = "data-$1/events.jsonl"
spool_dir = "data-$1/spool"
[classify]
enabled = $4
apple_egress = "apple-egress.csv"
EOF
}

wait_port() {
    local port=$1 i
    for i in $(seq 1 600); do
        curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && return 0
        sleep 0.2
    done
    die "nothing answered on port $port"
}

# ticks PID: the CPU time of PID so far, in clock ticks, as "user system".
ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

main() {
    need
    log "building"
    cargo build --release --bin mailtrack >&2
    local mailtrack=$ROOT/target/release/mailtrack
    cd "$WORK"
    "$mailtrack" keygen --id 1 >keys.toml
    chmod 600 keys.toml
    config on "$P_ON" "$P_ON_ADMIN" true
    config off "$P_OFF" "$P_OFF_ADMIN" false
    python3 "$ROOT/benches/apple_egress.py" >apple-egress.csv
    local link target
    link=$("$mailtrack" sign --config on.toml --message-id bench-0001 \
        --send-time "$(($(date +%s) - 3600))" 'https://example.com/welcome?utm_source=newsletter')
    target=/${link#http://*/}
    export RUST_LOG=warn

    log "CPU per click: $ROUNDS rounds of ${DURATION}s each"
    taskset -c "$SERVER_CPU" "$mailtrack" serve --config on.toml >on.log 2>&1 &
    local pid_on=$!
    PIDS+=("$pid_on")
    taskset -c "$SERVER_CPU" "$mailtrack" serve --config off.toml >off.log 2>&1 &
    local pid_off=$!
    PIDS+=("$pid_off")
    wait_port "$P_ON"
    wait_port "$P_OFF"
    local round side sides pid port u0 s0 u1 s1 clicks
    : >cpu.tsv
    for round in $(seq 1 "$ROUNDS"); do
        sides="on off"
        [ $((round % 2)) -eq 0 ] && sides="off on"
        for side in $sides; do
            if [ "$side" = on ]; then pid=$pid_on port=$P_ON; else pid=$pid_off port=$P_OFF; fi
            read -r u0 s0 < <(ticks "$pid")
            clicks=$(taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" \
                -H "User-Agent: $USER_AGENT" "http://127.0.0.1:$port$target" |
                awk '/requests in/ { print $1 }')
            read -r u1 s1 < <(ticks "$pid")
            printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$side" "$clicks" "$((u1 - u0))" "$((s1 - s0))" >>cpu.tsv
        done
    done
    kill -INT "$pid_on" "$pid_off"
    wait "$pid_on" "$pid_off" || true
    PIDS=()

    if [ "$CALLGRIND" = 1 ]; then
        log "instructions per click: ${CALLGRIND_SECONDS}s of paced clicks under callgrind, each"
        printf 'function delay()\n    return 2\nend\n' >paced.lua
        : >instructions.tsv
        for side in on off; do
            if [ "$side" = on ]; then port=$P_ON; else port=$P_OFF; fi
            rm -rf "data-$side"
            valgrind --tool=callgrind --callgrind-out-file="callgrind.$side.%p" \
                "$mailtrack" serve --config "$side.toml" >"cg-$side.log" 2>&1 &
            pid=$!
            PIDS+=("$pid")
            wait_port "$port"
            # One click first, so that what runs once (the first event's file) is not counted.
            curl -s -o /dev/null -H "User-Agent: $USER_AGENT" "http://127.0.0.1:$port$target"
            sleep 2
            callgrind_control --zero "$pid" >/dev/null
            clicks=$(wrk -s paced.lua -t1 -c4 -d"${CALLGRIND_SECONDS}s" \
                -H "User-Agent: $USER_AGENT" "http://127.0.0.1:$port$target" |
                awk '/requests in/ { print $1 }')
            sleep 3
            callgrind_control --dump "$pid" >/dev/null
            kill -INT "$pid"
            wait "$pid" || true
            PIDS=()
            local counted
            counted=$(awk '/^summary:/ { print $2 }' "callgrind.$side.$pid.1")
            printf '%s\t%s\t%s\n' "$side" "$clicks" "$counted" >>instructions.tsv
        done
    fi

    python3 - "$WORK" "$CALLGRIND" <<'EOF'
import statistics, sys
work, callgrind = sys.argv[1], sys.argv[2] == "1"
ticks_per_second = 100
cpu = {"on": [], "off": []}
user_share = {"on": [], "off": []}
ratios = []
print("round  classified                 classifier off             cost")
rows = [line.split("\t") for line in open(f"{work}/cpu.tsv").read().split("\n") if line]
for r in sorted({int(row[0]) for row in rows}):
    cells, us = {}, {}
    for _, side, clicks, user, system in (row for row in rows if int(row[0]) == r):
        us[side] = (int(user) + int(system)) / ticks_per_second / int(clicks) * 1e6
        user_share[side].append(int(user) / (int(user) + int(system)))
        cpu[side].append(us[side])
        cells[side] = f"{int(clicks):>8} clicks {us[side]:6.2f} µs"
    ratios.append(us["on"] / us["off"])
    print(f"{r:>5}  {cells['on']}   {cells['off']}   {(ratios[-1] - 1) * 100:+5.1f}%")
on, off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
paired = statistics.median(ratios) - 1
print(f"CPU per click: medians classified {on:.2f} µs, off {off:.2f} µs ({(on / off - 1) * 100:+.1f}%); "
      f"median of the rounds' own ratios {paired * 100:+.1f}% "
      f"(goal <= 5%: {'met' if paired <= 0.05 else 'MISSED'})")
if callgrind:
    counts = {}
    for line in open(f"{work}/instructions.tsv"):
        side, clicks, counted = line.split()
        counts[side] = int(counted) / int(clicks)
    extra = counts["on"] - counts["off"]
    share = statistics.median(user_share["off"])
    print(f"user-space instructions per click (callgrind): classified {counts['on']:,.0f}, "
          f"off {counts['off']:,.0f}: {extra:+,.0f} ({extra / counts['off'] * 100:+.1f}% of the "
          f"user-space share of a click)")
    print(f"user space is {share * 100:.0f}% of a click's CPU time (the runs above), so the "
          f"classifier's instructions are about {extra / counts['off'] * share * 100:.1f}% of a click's CPU")
EOF
}

main "$@"

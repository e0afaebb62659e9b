#!/usr/bin/env python3
"""Summarise a benches/compare.sh run: medians, ratios, goals, a Markdown table and an SVG chart.

    python3 benches/chart.py benches/results

Reads latest.tsv (one line per wrk run: round, row, req/s, p50 ms, p99 ms, requests, socket
errors, non-3xx answers, TCP connections accepted, the server process's CPU seconds, the busy
share of the server core and of the client core) and latest.env (key=value notes) from the
folder, and writes latest.json, latest.md and chart.svg beside them. Prints the table and the
goals, each "met" or "MISSED". Standard library only.
"""

import json
import statistics
import sys
from pathlib import Path
from xml.sax.saxutils import escape

# row id -> (section, label). The order is the table's and the chart's.
ROWS = {
    "mailtrack_file": ("HTTP keep-alive", "mailtrack click, file sink"),
    "mailtrack_unclassified": ("HTTP keep-alive", "mailtrack click, file sink, classifier off"),
    "mailtrack_redis": ("HTTP keep-alive", "mailtrack click, Redis sink"),
    "mailtrack_139": ("HTTP keep-alive", "mailtrack click, 139 mail form (decoded once)"),
    "bare_hyper": ("HTTP keep-alive", "bare hyper, fixed 302 (floor)"),
    "nginx_return": ("HTTP keep-alive", "nginx `return 302`"),
    "nginx_lua": ("HTTP keep-alive", "nginx + Lua /CL0 fallback (unsigned)"),
    "mailtrack_https": ("HTTPS keep-alive", "mailtrack click"),
    "bare_hyper_https": ("HTTPS keep-alive", "bare hyper, fixed 302"),
    "nginx_return_https": ("HTTPS keep-alive", "nginx `return 302`"),
    "nginx_lua_https": ("HTTPS keep-alive", "nginx + Lua /CL0 fallback"),
    "mailtrack_newtls": ("new TLS connection per request", "mailtrack click"),
    "bare_hyper_newtls": ("new TLS connection per request", "bare hyper, fixed 302"),
    "nginx_newtls": ("new TLS connection per request", "nginx `return 302`"),
    "mailtrack_half_load": ("half of mailtrack's peak, paced", "mailtrack click"),
    "bare_hyper_half_load": ("half of mailtrack's peak, paced", "bare hyper, fixed 302"),
}

# (description, numerator row, denominator row, goal ratio)
RATIO_GOALS = [
    ("click redirect vs bare hyper floor", "mailtrack_file", "bare_hyper", 0.85),
    ("click redirect vs nginx+Lua", "mailtrack_file", "nginx_lua", 2.0),
    ("new TLS connections/s vs nginx", "mailtrack_newtls", "nginx_newtls", 1.0),
    # The classifier (with a 300,000-prefix Apple list) costs a click at most 5%.
    ("click with the classifier vs without", "mailtrack_file", "mailtrack_unclassified", 0.95),
]
P99_GOAL_MS = 1.0
RSS_GOAL_MB = 100.0


def optional_number(fields, i):
    """fields[i] as a number, or None when the column is missing or empty."""
    return float(fields[i]) if len(fields) > i and fields[i] else None


def read_runs(folder):
    runs = []
    for line in (folder / "latest.tsv").read_text().splitlines():
        f = line.split("\t")
        if len(f) < 9:
            continue
        runs.append({
            "round": int(f[0]), "row": f[1], "rps": float(f[2]), "p50_ms": float(f[3]),
            "p99_ms": float(f[4]), "requests": int(f[5]), "errors": int(f[6]),
            "non3xx": int(f[7]), "accepted": int(f[8]),
            # Older runs lack the CPU columns.
            "cpu_s": optional_number(f, 9),
            "server_busy": optional_number(f, 10),
            "client_busy": optional_number(f, 11),
        })
    return runs


def read_env(folder):
    env = {}
    path = folder / "latest.env"
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
    return env


def cpu_us_per_request(run):
    """The server process's CPU microseconds per request in one run, if measured."""
    if not run["cpu_s"] or not run["requests"]:
        return None
    return run["cpu_s"] * 1e6 / run["requests"]


def median_of(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs):
    rows = {}
    for row in ROWS:
        mine = [r for r in runs if r["row"] == row]
        if not mine:
            continue
        rows[row] = {
            "rps": statistics.median(r["rps"] for r in mine),
            "p50_ms": statistics.median(r["p50_ms"] for r in mine),
            "p99_ms": statistics.median(r["p99_ms"] for r in mine),
            "cpu_us": median_of(cpu_us_per_request(r) for r in mine),
            "server_busy": median_of(r["server_busy"] for r in mine),
            "client_busy": median_of(r["client_busy"] for r in mine),
            "rounds": len(mine),
            "errors": sum(r["errors"] for r in mine),
            "non3xx": sum(r["non3xx"] for r in mine),
            # For the new-connection rows: TCP connections accepted per request made.
            "accepted_per_request": (
                sum(r["accepted"] for r in mine) / max(1, sum(r["requests"] for r in mine))
            ),
        }
    return rows


def round_ratio(runs, numerator, denominator, value=lambda r: r["rps"]):
    """The median over rounds of numerator/denominator, each pair from the same round."""
    by_round = {}
    for r in runs:
        by_round.setdefault(r["round"], {})[r["row"]] = value(r)
    ratios = [
        rows[numerator] / rows[denominator]
        for rows in by_round.values()
        if numerator in rows and rows.get(denominator)
    ]
    return statistics.median(ratios) if ratios else None


def goals(runs, rows, env):
    out = []
    for text, num, den, goal in RATIO_GOALS:
        ratio = round_ratio(runs, num, den)
        out.append({
            "goal": "%s >= %.2fx" % (text, goal),
            "value": None if ratio is None else round(ratio, 3),
            "display": "n/a" if ratio is None else "%.2fx" % ratio,
            "met": ratio is not None and ratio >= goal,
        })
    half = rows.get("mailtrack_half_load")
    out.append({
        "goal": "p99 < %.0f ms at half of peak" % P99_GOAL_MS,
        "value": None if half is None else half["p99_ms"],
        "display": "n/a" if half is None else "p99 %.3f ms at %.0f req/s" % (half["p99_ms"], half["rps"]),
        "met": half is not None and half["p99_ms"] < P99_GOAL_MS,
    })
    rss_kb = env.get("idle_rss_kb")
    rss_mb = None if not rss_kb else int(rss_kb) * 1024 / 1e6
    out.append({
        "goal": "VmRSS <= %.0f MB with %s idle connections"
        % (RSS_GOAL_MB, env.get("idle_connections_requested", "10000")),
        "value": rss_mb,
        "display": "n/a" if rss_mb is None else "%.1f MB (%s)" % (rss_mb, env.get("idle_client", "")),
        "met": rss_mb is not None and rss_mb <= RSS_GOAL_MB,
    })
    return out


def ratio_to(runs, row, section):
    """The comparison shown in the table's last column."""
    peer = {
        "HTTP keep-alive": "bare_hyper",
        "HTTPS keep-alive": "bare_hyper_https",
        "new TLS connection per request": "nginx_newtls",
        "half of mailtrack's peak, paced": None,
    }[section]
    if peer is None or row == peer:
        return ""
    ratio = round_ratio(runs, row, peer)
    name = "nginx" if peer == "nginx_newtls" else "bare hyper"
    return "" if ratio is None else "%.2fx %s" % (ratio, name)


def markdown(runs, rows):
    lines = [
        "| | server | req/s | p50 ms | p99 ms | vs | server CPU µs/req | cores busy (server/client) |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    section_seen = None
    for row, (section, label) in ROWS.items():
        if row not in rows:
            continue
        s = rows[row]
        lines.append("| %s | %s | %.0f | %.3f | %.3f | %s | %s | %s |" % (
            section if section != section_seen else "", label, s["rps"], s["p50_ms"],
            s["p99_ms"], ratio_to(runs, row, section),
            "" if s["cpu_us"] is None else "%.1f" % s["cpu_us"],
            "" if s["server_busy"] is None else "%.0f%% / %.0f%%" % (
                100 * s["server_busy"], 100 * s["client_busy"])))
        section_seen = section
    return "\n".join(lines)


def svg(rows, env):
    """A horizontal bar chart of median requests per second, one panel per section."""
    width, label_w, bar_w, bar_h, gap = 980, 330, 440, 18, 6
    sections = []
    for row, (section, label) in ROWS.items():
        if row in rows:
            if not sections or sections[-1][0] != section:
                sections.append((section, []))
            sections[-1][1].append((row, label))
    height = 60 + sum(34 + len(items) * (bar_h + gap) for _, items in sections) + 20
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (width, height),
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="22" font-size="15" font-weight="bold">mailtrack vs peers: requests per second (median of %s rounds; one server core, wrk on the other)</text>' % escape(env.get("rounds", "?").split()[0].split("=")[-1]),
        '<text x="10" y="40" fill="#555">%s · %s · %s cores · p99 latency after each bar</text>' % (
            escape(env.get("date", "")), escape(env.get("cpu", "")), escape(env.get("cores", "?"))),
    ]
    y = 60
    for section, items in sections:
        top = max(rows[r]["rps"] for r, _ in items) or 1
        parts.append('<text x="10" y="%d" font-weight="bold">%s</text>' % (y + 14, escape(section)))
        y += 24
        for row, label in items:
            s = rows[row]
            w = bar_w * s["rps"] / top
            colour = "#d9480f" if row.startswith("mailtrack") else ("#1c7ed6" if row.startswith("bare") else "#868e96")
            parts.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (label_w - 8, y + 13, escape(label)))
            parts.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (label_w, y, w, bar_h, colour))
            parts.append('<text x="%.1f" y="%d">%.0f/s · p99 %.2f ms</text>' % (label_w + w + 6, y + 13, s["rps"], s["p99_ms"]))
            y += bar_h + gap
        y += 10
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "benches/results")
    runs = read_runs(folder)
    env = read_env(folder)
    rows = summarise(runs)
    results = goals(runs, rows, env)
    table = markdown(runs, rows)
    notes = []
    for row, s in rows.items():
        if s["errors"] or s["non3xx"]:
            notes.append("%s: %d socket errors, %d non-3xx answers over all rounds" % (row, s["errors"], s["non3xx"]))
        if row.endswith("newtls"):
            notes.append("%s: %.2f TCP connections accepted per request" % (row, s["accepted_per_request"]))
    if "events_file_lines" in env:
        notes.append(
            "events: %s lines in the JSONL file, %s on mailtrack's standard output, %s entries in "
            "the Redis stream (Redis row: %s)" % (
                env.get("events_file_lines"), env.get("events_stdout_lines"),
                env.get("redis_stream_length"), env.get("redis_row")))
    if env.get("events_file_lines") == "0" and env.get("events_stdout_lines", "0") != "0":
        notes.append(
            "NOTE: `serve` does not use the [events] pipeline yet: both mailtrack rows wrote "
            "their events to standard output (redirected to a file), so the Redis row measures "
            "the same path as the file row")
    for key in ("events_file_metrics", "events_redis_metrics"):
        if env.get(key):
            notes.append("%s: %s" % (key, env[key].strip()))
    for row, s in rows.items():
        if s["server_busy"] is not None and s["server_busy"] < 0.9 and s["client_busy"] > 0.95:
            notes.append(
                "%s: client-bound (server core %.0f%% busy, wrk's core %.0f%%): its req/s "
                "measures wrk as much as the server; compare server CPU per request" % (
                    row, 100 * s["server_busy"], 100 * s["client_busy"]))
    for text, num, den, _ in RATIO_GOALS:
        # The same comparison by the server's own cost: requests per server CPU-second.
        ratio = round_ratio(runs, den, num, lambda r: cpu_us_per_request(r) or 0.0)
        if ratio:
            notes.append("%s, per server CPU-second: %.2fx" % (text, ratio))
    if "tls_resumed" in env:
        notes.append("TLS: wrk resumed the session on %s" % env["tls_resumed"])
    goal_lines = ["- %s: %s — %s" % (g["goal"], g["display"], "met" if g["met"] else "MISSED") for g in results]
    (folder / "latest.json").write_text(json.dumps(
        {"env": env, "rows": rows, "goals": results, "runs": runs}, indent=2) + "\n")
    (folder / "latest.md").write_text(
        "Run of %s on %s (%s cores), rounds=%s.\n\n%s\n\nGoals:\n\n%s\n\nChecks:\n\n%s\n" % (
            env.get("date", "?"), env.get("cpu", "?"), env.get("cores", "?"), env.get("rounds", ""),
            table, "\n".join(goal_lines), "\n".join("- " + n for n in notes) or "- none"))
    (folder / "chart.svg").write_text(svg(rows, env))
    print(table)
    print()
    print("Goals (ratios within this run):")
    print("\n".join(goal_lines))
    if notes:
        print()
        print("\n".join(notes))
    print()
    print("Wrote %s, %s and %s" % (folder / "latest.md", folder / "latest.json", folder / "chart.svg"))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Summarises a bench/soak.sh run directory as Markdown (printed on stdout).

Reads <dir>/redis.jsonl and <dir>/sqlite.jsonl (the benchmark's interval lines, stamped with
"at", and the script's events), <dir>/redis-report.json and <dir>/sqlite-final.json.
"""
import json
import os
import sys
from collections import Counter, defaultdict


def lines(path):
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def reports(path):
    """The JSON reports in a file (one per line; a killed run wrote none)."""
    return [r for r in lines(path) if "workload" in r]


def summarise(name, records, final_reports):
    events = [r for r in records if "event" in r]
    intervals = [r for r in records if "soak" in r]
    resumes = [r for r in records if "resume_check" in r]
    if not intervals:
        return f"### {name}\n\nno interval lines\n"
    t0 = min(r["at"] for r in records)
    out = [f"### {name}\n"]

    # Per minute: throughput, errors, RSS.
    minutes = defaultdict(list)
    for r in intervals:
        minutes[int((r["at"] - t0) // 60)].append(r)
    restarts = defaultdict(list)
    for e in events:
        if e["event"] in ("redis-server-killed", "bench-killed"):
            restarts[int((e["at"] - t0) // 60)].append(e["event"])
    out.append("| minute | turns/s | turn p50 µs | turn p99 µs (max of 10 s) | errors (operation:kind) | RSS MiB (max) | peak RSS MiB |")
    out.append("|---:|---:|---:|---:|---|---:|---:|")
    for m in sorted(minutes):
        rs = minutes[m]
        turns = sum(r["turns"] for r in rs)
        secs = sum(r["turns"] / r["turns_per_sec"] for r in rs if r["turns_per_sec"])
        tps = turns / secs if secs else 0.0
        errs = Counter()
        for r in rs:
            errs.update(r.get("errors") or {})
        p50 = sorted(r["turn_p50_us"] for r in rs)[len(rs) // 2]
        p99 = max(r["turn_p99_us"] for r in rs)
        rss = max((r.get("rss_kib") or 0) for r in rs) / 1024
        peak = max((r.get("peak_rss_kib") or 0) for r in rs) / 1024
        mark = " (restart)" if restarts.get(m) else ""
        e = ", ".join(f"{k} {v}" for k, v in sorted(errs.items())) or "0"
        out.append(f"| {m + 1}{mark} | {tps:,.0f} | {p50:,.0f} | {p99:,.0f} | {e} | {rss:.1f} | {peak:.1f} |")

    total_turns = sum(r["turns"] for r in intervals)
    errs = Counter()
    for r in intervals:
        errs.update(r.get("errors") or {})
    span = max(r["at"] for r in records) - t0
    out.append("")
    out.append(f"- {total_turns:,} turns measured in {span / 60:.1f} minutes "
               f"({total_turns / span:,.0f} turns/s overall, restarts included)")
    out.append(f"- errors by kind: {dict(sorted(errs.items())) or 'none'}")
    rss = [(r.get('rss_kib') or 0) / 1024 for r in intervals]
    out.append(f"- RSS (MiB): first interval {rss[0]:.1f}, min {min(rss):.1f}, max {max(rss):.1f}, "
               f"last {rss[-1]:.1f}")
    out.append(f"- restarts: {sum(len(v) for v in restarts.values())} "
               f"({', '.join(e['event'] for e in events if e['event'].endswith('killed'))})")

    # Items lost: the checks at clear, the resume checks of restarted runs, the final check.
    lost = extra = 0
    if name == "SQLite":
        # Killed runs write no report: their last interval line holds their checks at clear.
        by_run, last = [], None
        for r in intervals:
            if last is not None and r["soak"] <= last["soak"]:
                by_run.append(last)
            last = r
        if last is not None:
            by_run.append(last)
        for r in by_run:
            lost += r.get("items_lost_so_far", 0)
            extra += r.get("items_extra_so_far", 0)
        for r in resumes:
            c = r["resume_check"]
            out.append(f"- resume check after a kill: {c['items_found']:,} items found in "
                       f"{c['sessions']} sessions, {c['items_lost']} lost, {c['items_extra']} extra "
                       f"({r['ledger_records']:,} ledger records so far)")
            lost += c["items_lost"]
            extra += c["items_extra"]
    for rep in final_reports:
        c = rep.get("items_check") or {}
        out.append(f"- final check: {c.get('items_found', 0):,} items in {c.get('sessions')} sessions "
                   f"({c.get('items_acknowledged', 0):,} items acknowledged, "
                   f"{c.get('items_popped', 0):,} popped, {c.get('sessions_cleared', 0):,} clears, "
                   f"{c.get('writes_outcome_unknown', 0)} writes of unknown outcome); the report: "
                   f"{rep['items_lost']} lost, {rep['items_extra']} extra, checks at clear "
                   f"{rep.get('checks_at_clear')}")
        lost += rep["items_lost"]
        extra += rep["items_extra"]
    out.append(f"- **items lost: {lost}**, items extra: {extra} (sessions counted and checked at "
               f"every 100th turn on a session before its clear, at each restart and at the end)")
    return "\n".join(out) + "\n"


def main():
    d = sys.argv[1]
    print(f"## Soak run ({os.path.basename(d.rstrip('/'))})\n")
    for name, log, rep in [
        ("Redis", "redis.jsonl", "redis-report.json"),
        ("SQLite", "sqlite.jsonl", "sqlite-final.json"),
    ]:
        path = os.path.join(d, log)
        if os.path.exists(path):
            print(summarise(name, lines(path), reports(os.path.join(d, rep))))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Print the medians of one or more bench/results/*.json files as Markdown tables.

    python3 bench/summarize.py bench/results/*.json
"""
import json
import sys

COLUMNS = {
    "w1_enqueue": [("single_jobs_per_s", "single/s"), ("bulk_jobs_per_s", "bulk/s")],
    "w2_drain": [("jobs_per_s", "jobs/s from spawn"), ("jobs_per_s_after_first_job", "jobs/s after 1st"),
                 ("first_job_after_s", "boot s"), ("duplicates", "dups")],
    "w3_latency": [("latency_ms_p50", "p50 ms"), ("latency_ms_p95", "p95 ms"), ("latency_ms_p99", "p99 ms"),
                   ("latency_ms_max", "max ms")],
    "w4_big_backlog": [("prep_enqueue_s", "enqueue 200k s"), ("time_to_first_job_s", "1st job s"),
                       ("peak_rss_mb", "peak RSS MB"), ("idle_rss_mb", "idle RSS MB"),
                       ("peak_advisory_locks", "peak adv. locks"), ("completed", "done in window"), ("jobs_per_s_after_first_job", "jobs/s")],
    "w5_delayed": [("immediate_all_done_s", "100 done s"), ("immediate_latency_ms_p50", "p50 ms"),
                   ("immediate_latency_ms_max", "max ms"), ("peak_rss_mb", "peak RSS MB"),
                   ("peak_advisory_locks", "peak adv. locks"), ("delayed_jobs_run_early", "early")],
    "w6_kill9": [("lost", "lost"), ("duplicate_executions", "dups"),
                 ("seconds_restart_to_last_job", "restart->last s"), ("seconds_kill_to_last_job", "kill->last s")],
    # lost / dups: the worst run, not the median (one run in three losing jobs must show)
    "w7_pg_restart": [("max:lost", "lost (worst run)"), ("max:duplicate_executions", "dups (worst run)"),
                      ("stall_after_clean_restart_s", "clean restart stall s"),
                      ("stall_after_immediate_stop_s", "immediate stop stall s"),
                      ("stall_after_terminate_s", "terminate stall s"),
                      ("longest_gap_after_immediate_stop_s", "longest gap after imm. s"),
                      ("total_s", "total s"), ("workers_alive_at_end", "workers alive")],
    "w8_long_transaction": [("jobs_per_s", "jobs/s"), ("jobs_per_s_first_quarter", "1st quarter jobs/s"),
                            ("jobs_per_s_last_quarter", "last quarter jobs/s"),
                            ("longest_pause_between_starts_s", "longest pause s"),
                            ("dead_tuples_at_end", "dead tuples"), ("max:duplicates", "dups (worst run)")],
}


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def main(paths):
    rows = {}  # workload -> system -> (median, runs_ok, runs_total, file)
    for p in paths:
        d = json.load(open(p))
        for name, s in d.get("systems", {}).items():
            if s.get("status") != "ok":
                print(f"- {name}: {s.get('status')} — {s.get('reason')}  ({p})")
                continue
            for wl, w in s.get("workloads", {}).items():
                if w.get("not_applicable"):
                    rows.setdefault(wl, {})[name] = (None, "n/a", w["not_applicable"])
                    continue
                m = dict(w.get("median", {}))
                ok_runs = [r for r in w.get("runs", []) if "error" not in r]
                for k, _ in COLUMNS.get(wl, []):
                    if k.startswith("max:"):
                        vals = [r.get(k[4:]) for r in ok_runs if isinstance(r.get(k[4:]), (int, float))]
                        m[k] = max(vals) if vals else None
                        continue
                    vals = [r.get(k) for r in ok_runs]  # booleans have no median: all runs must agree
                    if vals and all(isinstance(v, bool) for v in vals):
                        m[k] = "yes" if all(vals) else f"no ({vals.count(False)}/{len(vals)} runs)"
                rows.setdefault(wl, {})[name] = (m, m.get("runs_ok"), m.get("runs_total"))
    for wl, cols in COLUMNS.items():
        if wl not in rows:
            continue
        print(f"\n### {wl}\n")
        cols = cols + [("foreign_cpu_per_s", "foreign CPU")]
        print("| system | runs | " + " | ".join(c[1] for c in cols) + " |")
        print("|---|---|" + "---|" * len(cols))
        for name, (m, ok, total) in sorted(rows[wl].items()):
            if m is None:  # workload not applicable to this system
                print(f"| {name} | n/a | " + " | ".join("n/a" for _ in cols) + " |")
                continue
            print(f"| {name} | {ok}/{total} | " + " | ".join(fmt(m.get(k)) for k, _ in cols) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

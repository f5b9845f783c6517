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
    "w9_outage_paused": [("max:double_executions_at_once", "run twice at once (worst run)"),
                         ("max:duplicate_executions", "re-runs (worst run)"),
                         ("max:limit_violations", "limit broken (worst run)"), ("max:dead", "dead (worst run)"),
                         ("max:jobs_with_an_attempt_without_history", "attempts without history (worst run)"),
                         ("max:paused_process_starts_after_resume", "paused process starts after resume"),
                         ("drain_after_back_s", "drain after server back s"), ("all_completed", "all completed")],
    "w10_long_fairness": [("drain_s", "drain s"), ("target_s", "target s"),
                          ("jobs_on_busiest_process", "jobs on busiest process"),
                          ("processes_with_jobs", "processes used"), ("meets_target", "meets target")],
    "w11_saturated_key": [("latency_ms_p50_without", "p50 ms, empty"), ("latency_ms_p99_without", "p99 ms, empty"),
                          ("latency_ms_p50_with_backlog", "p50 ms, 100k behind a key"),
                          ("latency_ms_p99_with_backlog", "p99 ms, 100k behind a key"),
                          ("backlog_enqueue_s", "backlog enqueue s")],
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


PG_REFERENCES = ("dramatiq_pg", "procrastinate", "pgqueuer", "oban")


def _median(d, system, workload, key):
    w = d.get("systems", {}).get(system, {}).get("workloads", {}).get(workload, {})
    return w.get("median", {}).get(key)


def _runs(d, system, workload, key):
    w = d.get("systems", {}).get(system, {}).get("workloads", {}).get(workload, {})
    return [r.get(key) for r in w.get("runs", []) if "error" not in r]


def targets(path):
    """The broker-engine issue's targets, checked against one result file (ratios within it)."""
    d = json.load(open(path))
    ll = "lamplighter"
    rows = []

    def check(name, measured, ok):
        rows.append((name, measured, "yes" if ok else "NO"))

    def best(workload, key, systems, pick=max):
        vals = {s: _median(d, s, workload, key) for s in systems}
        vals = {s: v for s, v in vals.items() if isinstance(v, (int, float))}
        return (pick(vals.items(), key=lambda kv: kv[1]) if vals else (None, None))

    drain = _median(d, ll, "w2_drain", "jobs_per_s")
    ref, ref_v = best("w2_drain", "jobs_per_s", PG_REFERENCES)
    redis = _median(d, "dramatiq_redis", "w2_drain", "jobs_per_s")
    if drain and ref_v:
        check(f"drain >= 2x the fastest PostgreSQL reference ({ref})", f"{drain:,.0f} vs {ref_v:,.0f} jobs/s = "
              f"{drain / ref_v:.2f}x", drain >= 2 * ref_v)
    if drain and redis:
        check("drain faster than dramatiq + Redis", f"{drain:,.0f} vs {redis:,.0f} jobs/s", drain > redis)
    single, stock = _median(d, ll, "w1_enqueue", "single_jobs_per_s"), _median(d, "dramatiq_pg", "w1_enqueue",
                                                                            "single_jobs_per_s")
    if single and stock:
        check("single sends >= 1.5x stock dramatiq-pg", f"{single:,.0f} vs {stock:,.0f}/s = {single / stock:.2f}x",
              single >= 1.5 * stock)
    bulk = _median(d, ll, "w1_enqueue", "bulk_jobs_per_s")
    ref, ref_v = best("w1_enqueue", "bulk_jobs_per_s", [s for s in d.get("systems", {}) if s != ll])
    if bulk and ref_v:
        check(f"bulk >= the fastest reference's bulk ({ref})", f"{bulk:,.0f} vs {ref_v:,.0f}/s", bulk >= ref_v)
    p99 = _median(d, ll, "w3_latency", "latency_ms_p99")
    ref, ref_v = best("w3_latency", "latency_ms_p99", [s for s in d.get("systems", {}) if s != ll], pick=min)
    if p99 and ref_v:
        check(f"latency p99 <= the best reference's ({ref})", f"{p99:.2f} vs {ref_v:.2f} ms", p99 <= ref_v)
    first = _median(d, ll, "w4_big_backlog", "time_to_first_job_s")
    if first is not None:
        check("200k backlog: first job within 0.3 s", f"{first:.2f} s", first <= 0.3)
    ratio = _median(d, ll, "w4_big_backlog", "rss_vs_idle")
    if ratio is not None:
        check("200k backlog: worker RSS within 20% of an idle worker's",
              f"{_median(d, ll, 'w4_big_backlog', 'peak_rss_mb'):.0f} vs "
              f"{_median(d, ll, 'w4_big_backlog', 'idle_rss_mb'):.0f} MB = {ratio:.2f}", ratio <= 1.2)
    locks = _runs(d, ll, "w4_big_backlog", "peak_advisory_locks")
    if locks:
        check("200k backlog: advisory locks independent of the backlog", f"peak {max(locks)}", max(locks) == 0)
    done = _median(d, ll, "w5_delayed", "immediate_all_done_s")
    if done is not None:
        check("50k delayed: the 100 immediate jobs done within 1 s", f"{done:.2f} s", done <= 1.0)
        idle = _median(d, ll, "w4_big_backlog", "idle_rss_mb")
        peak = _median(d, ll, "w5_delayed", "peak_rss_mb")
        if idle and peak:
            check("50k delayed: RSS flat (within 20% of an idle worker's)", f"{peak:.0f} vs {idle:.0f} MB",
                  peak <= 1.2 * idle)
        early = _runs(d, ll, "w5_delayed", "delayed_jobs_run_early")
        check("50k delayed: none run early", f"{max(early)}", max(early) == 0)
    lost = _runs(d, ll, "w6_kill9", "lost")
    if lost:
        kill = _runs(d, ll, "w6_kill9", "seconds_kill_to_last_job")
        dups = _runs(d, ll, "w6_kill9", "duplicate_executions")
        check("kill -9: 0 lost", f"lost {lost}", max(lost) == 0)
        check("kill -9: rescue within 10 s", f"kill -> last job {', '.join(f'{k:.1f}' for k in kill)} s",
              max(kill) <= 10)
        rows.append(("kill -9: re-runs (running + flush window)", f"{dups}", "see README"))
    lost = _runs(d, ll, "w7_pg_restart", "lost")
    if lost:
        alive = _runs(d, ll, "w7_pg_restart", "workers_alive_at_end")
        check("PostgreSQL restarts (clean, immediate, terminated backends): 0 lost", f"lost {lost}, workers alive "
              f"{alive}", max(lost) == 0 and all(alive))
    pause = _runs(d, ll, "w8_long_transaction", "longest_pause_between_starts_s")
    if pause:
        complete = _runs(d, ll, "w8_long_transaction", "complete")
        check("long-open transaction: slower, never stalled", f"longest pause {max(pause):.2f} s, complete "
              f"{complete}", all(complete) and max(pause) < 5)
    print("| target | measured | met |\n|---|---|---|")
    for name, measured, ok in rows:
        print(f"| {name} | {measured} | {ok} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--targets"]:
        for path in sys.argv[2:]:
            targets(path)
    else:
        main(sys.argv[1:])

"""`lamplighter perf [--actor A] [--since 1h] [--json]`: the performance samples
(domain/performance.py) as a table, and a sparkline per actor."""
from __future__ import annotations

from console import cli

TABLE_COLUMNS = ["taken_at", "actor", "completed", "failed", "fail_pct", "per_min", "run_p50_ms", "run_p95_ms",
                 "run_p99_ms", "wait_p50_ms", "wait_p95_ms"]


def register(verbs) -> None:
    p = verbs.add_parser("perf", help="per-actor throughput, failures, run time and queue wait over time")
    p.add_argument("--actor", help="one actor only")
    p.add_argument("--since", type=cli.duration, default=None, help="how far back (e.g. 1h, 7d; default 1h)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_perf)


def perf_view(*, since_seconds: float, actor: str | None):
    from domain import performance

    return performance.view(since_seconds=since_seconds, actor=actor)


def table_rows(view) -> list[dict]:
    return [{"taken_at": s.taken_at, "actor": s.actor_name, "completed": s.completed, "failed": s.failed,
             "fail_pct": f"{100 * s.failure_rate:.1f}", "per_min": f"{s.per_minute:.1f}",
             **{k: None if getattr(s, k) is None else f"{getattr(s, k):.1f}"
                for k in ("run_p50_ms", "run_p95_ms", "run_p99_ms", "wait_p50_ms", "wait_p95_ms")}}
            for s in view.samples]


def trend_lines(view) -> list[str]:
    width = max((len(t.actor_name) for t in view.trends), default=0)
    return [f"{t.actor_name.ljust(width)}  jobs/min {t.per_minute or '-'}  run p95 {t.run_p95 or '-'}  "
            f"({t.attempts} attempts, {t.failed} failed, {t.samples} samples)" for t in view.trends]


def cmd_perf(args, settings) -> int:
    since = args.since.total_seconds() if args.since else 3600.0
    view = perf_view(since_seconds=since, actor=args.actor)
    if args.json:
        cli.print_json(view)
        return 0
    print(cli.table(table_rows(view), TABLE_COLUMNS))
    if view.trends:
        print()
        print("\n".join(trend_lines(view)))
    if view.system:
        last = view.system[-1]
        depths = ", ".join(f"{q} {n}" for q, n in sorted(last.queue_depths.items())) or "none waiting"
        print(f"\nlatest: {last.connections_in_use} connections in use; waiting: {depths}")
    return 0

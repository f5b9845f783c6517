"""Server-rendered SVG line charts of the performance series (domain/performance.py): samples of
every actor summed (throughput, failures) or combined (run time p50 weighted by attempts, p95 the
slowest actor's) per sample time."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 360, 120, 28


@dataclass(frozen=True)
class Point:
    at: datetime
    completed: int
    failed: int
    run_p50_ms: float | None
    run_p95_ms: float | None


def combine(samples) -> list[Point]:
    """One point per sample time over every actor's samples."""
    by_time: dict[datetime, list] = {}
    for sample in samples:
        by_time.setdefault(sample.taken_at, []).append(sample)
    points = []
    for at in sorted(by_time):
        rows = by_time[at]
        weighted = [(r.run_p50_ms, r.completed + r.failed) for r in rows if r.run_p50_ms is not None]
        total = sum(w for _, w in weighted)
        p50 = sum(v * w for v, w in weighted) / total if total else None
        p95s = [r.run_p95_ms for r in rows if r.run_p95_ms is not None]
        points.append(Point(at=at, completed=sum(r.completed for r in rows), failed=sum(r.failed for r in rows),
                            run_p50_ms=p50, run_p95_ms=max(p95s) if p95s else None))
    return points


def line_chart(title: str, points: list[Point], series: dict[str, str], unit: str) -> Markup:
    """An SVG of ``series`` (attribute name -> CSS class) over the points' times."""
    values = [getattr(p, name) for p in points for name in series if getattr(p, name) is not None]
    top = max(values, default=0) or 1
    if len(points) < 2:
        body = f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">no samples yet</text>'
    else:
        start, end = points[0].at.timestamp(), points[-1].at.timestamp()
        span = (end - start) or 1

        def xy(point: Point, value: float) -> str:
            x = PAD + (point.at.timestamp() - start) / span * (WIDTH - 2 * PAD)
            y = HEIGHT - PAD / 2 - value / top * (HEIGHT - PAD)
            return f"{x:.1f},{y:.1f}"

        lines = []
        for name, css in series.items():
            path = " ".join(xy(p, getattr(p, name)) for p in points if getattr(p, name) is not None)
            lines.append(f'<polyline class="{css}" points="{path}"><title>{escape(name)}</title></polyline>')
        period = f"{points[0].at:%m-%d %H:%M} to {points[-1].at:%m-%d %H:%M} UTC"
        body = "".join(lines) + (f'<text x="2" y="12" class="axis">{top:g} {escape(unit)}</text>'
                                 f'<text x="2" y="{HEIGHT - 4}" class="axis">0</text>'
                                 f'<text x="{WIDTH - 4}" y="{HEIGHT + 12}" text-anchor="end" class="axis">{period}</text>')
    legend = " ".join(f'<tspan class="{css}-label">{escape(name)}</tspan>' for name, css in series.items())
    return Markup(f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 16}" role="img" aria-label="{escape(title)}">'
                  f'<title>{escape(title)}</title>{body}'
                  f'<text x="{PAD}" y="{HEIGHT + 12}" class="legend">{legend}</text></svg>')


def values_table(points: list[Point], series: dict[str, str], unit: str) -> Markup:
    """The chart's numbers as a table, folded under it: for screen readers (an SVG says only its
    title), for copying, and for a reader who wants the value at one time."""
    head = "".join(f"<th>{escape(name)} ({escape(unit)})</th>" for name in series)
    rows = "".join(
        f"<tr><td>{p.at:%m-%d %H:%M} UTC</td>"
        + "".join(f"<td>{'-' if getattr(p, name) is None else f'{getattr(p, name):g}'}</td>" for name in series)
        + "</tr>" for p in points)
    if not rows:
        rows = f'<tr><td colspan="{len(series) + 1}">no samples yet</td></tr>'
    return Markup(f'<details class="values"><summary>values</summary><table><tr><th>sample</th>{head}</tr>'
                  f"{rows}</table></details>")


def charts(samples) -> list[tuple[str, Markup, Markup]]:
    """(title, SVG, the same values as a table) per chart."""
    points = combine(samples)
    specs = [("Throughput (attempts per sample)", "throughput", {"completed": "ok"}, "jobs"),
             ("Failures", "failures", {"failed": "bad"}, "jobs"),
             ("Run time p50 / p95", "run time", {"run_p50_ms": "ok", "run_p95_ms": "warn"}, "ms")]
    return [(title, line_chart(name, points, series, unit), values_table(points, series, unit))
            for title, name, series, unit in specs]

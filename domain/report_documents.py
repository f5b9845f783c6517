"""A report's figures rendered for people: CSV (one row per figure, the same columns in every
report) and a self-contained HTML page (inline style, an inline SVG bar chart where one reads
better than a table; nothing fetched from elsewhere).

A report's data (domain/reports.py) is ``{"title", "period", "summary": [row], "sections":
[{"title", "rows": [row]}], "chart": {"title", "labels", "values"} | None}``; a row is
``{"item", "detail", "value", "previous", "change_pct"}`` (the last two for weekly ones).
"""
from __future__ import annotations

import csv
import html
import io

COLUMNS = ("section", "item", "detail", "value", "previous", "change_pct")


def _rows(data: dict):
    yield "summary", data.get("summary", [])
    for section in data.get("sections", []):
        yield section["title"], section["rows"]


def to_csv(data: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for section, rows in _rows(data):
        for row in rows:
            writer.writerow([section] + ["" if row.get(c) is None else row.get(c) for c in COLUMNS[1:]])
    return out.getvalue()


def bar_chart(title: str, labels: list[str], values: list[int | float], *, width: int = 720, height: int = 240) -> str:
    """An inline SVG bar chart, labelled, scaled to the largest value."""
    top = max([v for v in values if v is not None] + [1])
    left, bottom, head = 40, 40, 24
    plot_w, plot_h = width - left - 10, height - bottom - head
    step = plot_w / max(len(values), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(title)}" viewBox="0 0 {width} {height}">',
             f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{head + plot_h}" x2="{width - 10}" y2="{head + plot_h}" stroke="#555"/>',
             f'<text x="{left - 4}" y="{head + 10}" font-size="10" text-anchor="end">{top:g}</text>']
    every = max(1, len(labels) // 12)
    for i, (label, value) in enumerate(zip(labels, values)):
        bar = (value or 0) / top * plot_h
        x = left + i * step + step * 0.15
        parts.append(f'<rect x="{x:.1f}" y="{head + plot_h - bar:.1f}" width="{step * 0.7:.1f}" height="{bar:.1f}" '
                     f'fill="#3b6ea5"><title>{html.escape(str(label))}: {value}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x + step * 0.35:.1f}" y="{head + plot_h + 14}" font-size="10" '
                         f'text-anchor="middle">{html.escape(str(label))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[dict]) -> str:
    shown = [c for c in COLUMNS[1:] if any(r.get(c) not in (None, "") for r in rows)]
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in shown)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>"
                                    for c in shown) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(data: dict) -> str:
    title = html.escape(data["title"])
    period = data["period"]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
             "<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f0f0f0}</style>",
             "</head><body>", f"<h1>{title}</h1>",
             f"<p>{html.escape(period['start'])} to {html.escape(period['end'])} (exclusive), "
             f"{html.escape(period['zone'])}</p>"]
    if data.get("chart"):
        chart = data["chart"]
        parts.append(bar_chart(chart["title"], chart["labels"], chart["values"]))
    parts.append("<h2>Summary</h2>" + _table(data.get("summary", [])))
    for section in data.get("sections", []):
        parts.append(f"<h2>{html.escape(section['title'])}</h2>")
        parts.append(_table(section["rows"]) if section["rows"] else "<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)

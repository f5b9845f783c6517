"""`lamplighter reports [list] [--kind K]`, `reports show ID`, `reports export ID --format csv|html
[--output FILE]`: the stored admin reports (domain/reports.py). The export renders the report's
stored figures, the same bytes the job wrote to the file store."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from console import cli

TABLE_COLUMNS = ["id", "kind", "period_start", "period_end", "zone", "generated_at", "runs", "html_key"]
KINDS = ("daily", "weekly", "monthly_compliance")


def register(verbs) -> None:
    r = verbs.add_parser("reports", help="admin reports: list, show one, export one as CSV or HTML")
    r.set_defaults(run=cmd_list, kind=None, limit=50, json=False)
    actions = r.add_subparsers(dest="reports_action", metavar="ACTION", parser_class=cli.Parser)
    listed = actions.add_parser("list", help="reports, newest period first")
    listed.add_argument("--kind", choices=KINDS)
    listed.add_argument("--limit", type=cli.positive_int, default=50)
    listed.add_argument("--json", action="store_true")
    listed.set_defaults(run=cmd_list)
    shown = actions.add_parser("show", help="one report's figures")
    shown.add_argument("id", metavar="ID", type=cli.positive_int)
    shown.add_argument("--json", action="store_true")
    shown.set_defaults(run=cmd_show)
    exported = actions.add_parser("export", help="one report as CSV or HTML, to stdout or a file")
    exported.add_argument("id", metavar="ID", type=cli.positive_int)
    exported.add_argument("--format", choices=("csv", "html"), default="csv")
    exported.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    exported.set_defaults(run=cmd_export)


@dataclass(frozen=True)
class ReportRow:
    id: int
    kind: str
    period_start: date
    period_end: date
    zone: str
    generated_at: datetime
    runs: int
    csv_key: str
    html_key: str


def overview(*, kind: str | None = None, limit: int = 50) -> list[ReportRow]:
    from domain import reports

    return [ReportRow(id=r.id, kind=r.kind, period_start=r.period_start, period_end=r.period_end, zone=r.zone,
                      generated_at=r.generated_at, runs=r.runs, csv_key=r.csv_key, html_key=r.html_key)
            for r in reports.list_reports(kind=kind, limit=limit)]


def cmd_list(args, settings) -> int:
    cli.print_rows(overview(kind=args.kind, limit=args.limit), TABLE_COLUMNS, as_json=args.json)
    return 0


def cmd_show(args, settings) -> int:
    from domain import reports

    report = reports.get(args.id)
    if args.json:
        cli.print_json({"id": report.id, "kind": report.kind, "period_start": report.period_start,
                        "period_end": report.period_end, "zone": report.zone, "generated_at": report.generated_at,
                        "runs": report.runs, "csv_key": report.csv_key, "html_key": report.html_key,
                        "data": report.data})
        return 0
    print(f"report {report.id}: {report.data.get('title', report.kind)}")
    print(f"period: {report.period_start} to {report.period_end} (exclusive), {report.zone}")
    print(f"files:  {report.csv_key}, {report.html_key}")
    print(f"generated: {cli.cell(report.generated_at)} (run {report.runs} time(s))\n")
    print(cli.table(report.data.get("summary", []), ["item", "value", "previous", "change_pct"]))
    return 0


def cmd_export(args, settings) -> int:
    from domain import reports

    text = reports.render(reports.get(args.id), args.format)
    if args.output:
        Path(args.output).write_text(text)
        print(f"report {args.id} written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0

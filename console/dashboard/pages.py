"""The dashboard's pages (GET, server-rendered). Each reads the same view the CLI prints and the
API returns (console/verbs/<noun>.py, console/web/models.py, storage/jobs.py's keyset page):
never a query of its own. The overview, jobs, job, workers and queues pages read through
``pool.read``: from the read replica when LAMPLIGHTER_READ_DATABASE_URL names one (which lags
the primary: docs/operations.md "Past one primary"); sign-in, sessions and actions stay on the primary."""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from console.dashboard import charts, render
from console.dashboard.routing import DashboardRoute
from console.dashboard.session import Visitor, visitor
from console.verbs import alerts as alert_verbs
from console.verbs import perf as perf_verbs
from console.verbs import reports as report_verbs
from console.verbs import stats as stats_verbs
from console.verbs import workers as worker_verbs
from console.web.errors import ApiError
from console.web.jobs import decode_cursor, encode_cursor
from console.web.models import detail, summary
from domain import audit, scopes
from domain.errors import InvalidInput, NotFound

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
RANGES = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0}
STATES = ("queued", "running", "completed", "dead", "cancelled")
STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}


def _platform(who: Visitor, scope: str = "read") -> None:
    """Pages spanning every tenant: platform users only (another tenant's user gets a 404)."""
    scopes.authorize(who.principal, scope)


@router.get("/static/{name}")
async def static(name: str):
    if name not in STATIC:
        raise NotFound(f"no file {name!r}")
    return FileResponse(render.HERE / "static" / name, media_type=STATIC[name],
                        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})


@router.get("")
async def root():
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/")
async def overview(request: Request, who: Visitor = Depends(visitor), span: str = Query(default="hour", alias="range")):
    if not who.platform:
        return RedirectResponse("/dashboard/jobs", status_code=303)
    _platform(who)
    if span not in RANGES:
        raise InvalidInput(f"range: one of {', '.join(RANGES)}")
    settings = request.app.state.settings

    def read():
        from storage import metrics

        return {"stats": stats_verbs.stats_view(window_seconds=settings.failed_window),
                "workers": worker_verbs.workers_view(), "running": running_by_worker(),
                "leader": metrics.leader(lease_seconds=settings.lease_timeout),
                "alerts": alert_verbs.incidents(open_only=True, limit=20),
                "perf": perf_verbs.perf_view(since_seconds=RANGES[span], actor=None)}

    found = await request.app.state.pool.read(read)
    return render.page(request, "overview.html", who, span=span, ranges=list(RANGES),
                       charts=charts.charts(found["perf"].samples), **found)


def running_by_worker(limit: int = 500) -> dict[str, list[tuple[str, str]]]:
    """What each worker runs: (job id, actor) by worker id, from the Jobs page's listing of
    running jobs (storage.jobs.page)."""
    from storage import jobs
    from storage.tenants import TenantScope

    running: dict[str, list[tuple[str, str]]] = {}
    for listed in jobs.page(scope=TenantScope.every(), states=["running"], limit=limit):
        running.setdefault(str(listed.job.worker_id), []).append((str(listed.job.message_id), listed.job.actor_name))
    return running


def _aware(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name}: not a date and time (e.g. 2026-12-06T09:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class JobFilter:
    """The Jobs page's filters, as GET /api/jobs takes them (empty: no filter)."""

    state: str = ""
    queue: str = ""
    actor: str = ""
    tenant: str = ""
    error: str = ""
    since: str = ""
    until: str = ""

    def checked(self) -> "JobFilter":
        if self.state and self.state not in STATES:
            raise InvalidInput(f"state: one of {', '.join(STATES)}")
        if self.error and len(self.error) < 3:
            raise InvalidInput("error text: at least 3 characters")
        _aware("since", self.since), _aware("until", self.until)
        return self

    def scope_for(self, who: Visitor):
        """The rows ``who`` may list with this filter (a tenant's user: its tenant's; 404 for another)."""
        if who.principal.tenant_id is not None:
            scopes.authorize(who.principal, "read", tenant_id=self.tenant or who.principal.tenant_id)
        return scopes.tenant_scope(who.principal)

    def page(self, scope, *, after=None, limit: int = 50):
        """One keyset page: storage.jobs.page, the API's listing query."""
        from storage import jobs

        return jobs.page(scope=scope, states=[self.state] if self.state else jobs.STATES, tenant=self.tenant or None,
                         actor=self.actor or None, queue=self.queue or None, error=self.error or None,
                         since=_aware("since", self.since), until=_aware("until", self.until), after=after,
                         limit=limit)


@router.get("/jobs")
async def job_list(request: Request, who: Visitor = Depends(visitor),
                   state: str = Query(default="", max_length=20), queue: str = Query(default="", max_length=100),
                   actor: str = Query(default="", max_length=200), tenant: str = Query(default="", max_length=63),
                   error: str = Query(default="", max_length=200), since: str = Query(default="", max_length=40),
                   until: str = Query(default="", max_length=40), cursor: str = Query(default="", max_length=200),
                   limit: int = Query(default=50, ge=1, le=500)):
    """The API's listing (GET /api/jobs): the same filters and keyset page of storage.jobs.page."""
    chosen = JobFilter(state, queue, actor, tenant, error, since, until).checked()
    try:
        after = decode_cursor(cursor) if cursor else None
    except ApiError as exc:
        raise InvalidInput(exc.message) from None
    scope = chosen.scope_for(who)
    found = await request.app.state.pool.read(lambda: chosen.page(scope, after=after, limit=limit + 1))
    more = len(found) > limit
    found = found[:limit]
    return render.page(request, "jobs.html", who, jobs=[summary(listed.job) for listed in found],
                       filters=asdict(chosen), states=STATES, limit=limit,
                       next_cursor=encode_cursor(found[-1]) if more else None)


@router.get("/jobs/{job_id}")
async def job_page(job_id: uuid.UUID, request: Request, who: Visitor = Depends(visitor)):
    def read():
        from storage import jobs

        job = jobs.get(job_id)
        scopes.authorize(who.principal, "read", tenant_id=job.tenant_id)
        return job

    job = detail(await request.app.state.pool.read(read))
    next_attempt = job["available_at"] if job["state"] == "queued" else None
    return render.page(request, "job.html", who, job=job, next_attempt=next_attempt,
                       arguments={"args": job["args"], "kwargs": job["kwargs"]})


@router.get("/schedules")
async def schedule_list(request: Request, who: Visitor = Depends(visitor)):
    _platform(who)
    from console.verbs import schedule as schedule_verbs
    from scheduler import ticks

    views = await request.app.state.pool.run(ticks.overview)
    return render.page(request, "schedules.html", who,
                       schedules=[(view, schedule_verbs.table_row(view)) for view in views])


@router.get("/workers")
async def worker_list(request: Request, who: Visitor = Depends(visitor)):
    _platform(who)
    found = await request.app.state.pool.read(lambda: (worker_verbs.workers_view(), running_by_worker()))
    return render.page(request, "workers.html", who, workers=found[0], running=found[1])


@router.get("/queues")
async def queue_list(request: Request, who: Visitor = Depends(visitor)):
    _platform(who)
    seconds = request.app.state.settings.failed_window
    view = await request.app.state.pool.read(lambda: stats_verbs.stats_view(window_seconds=seconds))
    return render.page(request, "queues.html", who, stats=view)


@router.get("/alerts")
async def alert_list(request: Request, who: Visitor = Depends(visitor), show: str = Query(default="open")):
    _platform(who)
    rows = await request.app.state.pool.run(lambda: alert_verbs.incidents(open_only=show != "all", limit=200))
    return render.page(request, "alerts.html", who, alerts=rows, show=show)


@router.get("/reports")
async def report_list(request: Request, who: Visitor = Depends(visitor)):
    _platform(who)
    return render.page(request, "reports.html", who, reports=await request.app.state.pool.run(report_verbs.overview))


@router.get("/reports/{report_id}.{fmt}")
async def report_file(report_id: int, fmt: str, request: Request, who: Visitor = Depends(visitor)):
    """A report as `lamplighter reports export` writes it: HTML to read, CSV to download."""
    _platform(who)
    if fmt not in ("html", "csv"):
        raise NotFound(f"no report format {fmt!r}")
    from domain import reports

    text = await request.app.state.pool.run(lambda: reports.render(reports.get(report_id), fmt))
    if fmt == "csv":
        return Response(text, media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="lamplighter-report-{report_id}.csv"',
            "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})
    return Response(text, media_type="text/html", headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


@router.get("/audit")
async def audit_log(request: Request, who: Visitor = Depends(visitor),
                    actor: str = Query(default="", max_length=200), action: str = Query(default="", max_length=200),
                    limit: int = Query(default=100, ge=1, le=1000)):
    """The API's audit log (GET /api/audit): ``audit`` scope; a tenant's user sees its tenant's."""
    scopes.authorize(who.principal, "audit", tenant_id=who.principal.tenant_id)
    scope = scopes.tenant_scope(who.principal)
    entries = await request.app.state.pool.run(lambda: audit.entries(
        scope=scope, actor=actor or None, action=action or None, limit=limit))
    return render.page(request, "audit.html", who, entries=entries, filters={"actor": actor, "action": action})

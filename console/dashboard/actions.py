"""The dashboard's actions (POST): retry, redrive with edited arguments, cancel, discard, bulk
retry, schedule and queue controls. Each needs the ``operate`` scope and the session's CSRF
token, asks for confirmation first (the same form, posted again with ``confirmed``), and goes
through the function the API and the CLI use, which writes the audit row: who (``user:<id>``),
what, when, and from where (the request's address)."""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse

from console.dashboard import render
from console.dashboard.pages import JobFilter
from console.dashboard.routing import DashboardRoute
from console.dashboard.session import Visitor, check_csrf, source, visitor
from console.verbs import jobs as job_verbs
from console.web.errors import ApiError
from console.web.jobs import _check_arguments
from domain import queues, scopes
from domain.errors import InvalidInput

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
JOB_ACTIONS = {"retry": "Run this job again with its arguments",
               "redrive": "Run this job again with the edited arguments below",
               "cancel": "Cancel this job (a running one is asked to stop)",
               "discard": "Give up on this waiting job: it goes to dead without running"}
MAX_ARGUMENTS = 64 * 1024


def _confirm(request: Request, who: Visitor, *, title: str, what: str, fields: dict, back: str, preview=None):
    return render.page(request, "confirm.html", who, title=title, what=what, action=request.url.path,
                       fields=fields, back=back, preview=preview)


def _done(request: Request, back: str, message: str) -> RedirectResponse:
    """Back to ``back``, whose page shows ``message`` once (render.NOTICE_COOKIE). Not in the URL:
    a link carrying its own notice would make the dashboard say what a stranger wrote."""
    response = RedirectResponse(back, status_code=303)
    render.set_notice(response, request, message)
    return response


def parse_arguments(text: str) -> tuple[list, dict]:
    """The redrive form's JSON: ``{"args": [...], "kwargs": {...}}`` (either may be left out)."""
    if len(text) > MAX_ARGUMENTS:
        raise InvalidInput(f"arguments: at most {MAX_ARGUMENTS} characters")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"arguments are not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, dict) or set(value) - {"args", "kwargs"}:
        raise InvalidInput('arguments: a JSON object with "args" (a list) and/or "kwargs" (an object)')
    args, kwargs = value.get("args", []), value.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidInput('arguments: "args" must be a list and "kwargs" an object')
    if "[REDACTED]" in text:
        raise InvalidInput("arguments still hold [REDACTED] values: type the real values (they are never shown)")
    return args, kwargs


@router.post("/jobs/{job_id}/{action}")
async def job_action(job_id: uuid.UUID, request: Request, action: str = Path(pattern="^(retry|redrive|cancel|discard)$"),
                     who: Visitor = Depends(visitor), csrf: str = Form(default="", max_length=200),
                     confirmed: str = Form(default=""), arguments: str = Form(default="", max_length=MAX_ARGUMENTS)):
    check_csrf(request, who, csrf)
    where = source(request)

    def read():
        from storage import jobs

        job = jobs.get(job_id)
        scopes.authorize(who.principal, "operate", tenant_id=job.tenant_id)
        return job

    job = await request.app.state.pool.run(read)
    back = f"/dashboard/jobs/{job_id}"
    edited = None
    if action == "redrive":
        edited = parse_arguments(arguments)
        try:
            _check_arguments(job.actor_name, *edited)
        except ApiError as exc:
            raise InvalidInput(exc.message) from None
    if confirmed != "yes":
        return _confirm(request, who, title=f"{action.capitalize()} job {str(job_id)[:8]} ({job.actor_name})",
                        what=JOB_ACTIONS[action], fields={"arguments": arguments} if edited else {}, back=back,
                        preview=None if edited is None else {"args": edited[0], "kwargs": edited[1]})

    def act() -> str:
        from storage import jobs

        if action in ("retry", "redrive"):
            job_verbs.retry_with(str(job_id), args=edited[0] if edited else None,
                                 kwargs=edited[1] if edited else None, by=who.actor, source=where)
            return "queued with edited arguments" if edited else "queued"
        if action == "cancel":
            return jobs.cancel(str(job_id), by=who.actor, source=where)
        jobs.discard(str(job_id), by=who.actor, source=where)
        return "discarded"

    return _done(request, back, await request.app.state.pool.run(act))


def _dead_ids(chosen: JobFilter, scope, limit: int) -> list[str]:
    """The dead jobs the filter selects, newest first, up to ``limit``: the Jobs page's keyset
    pages (storage.jobs.page), followed to the end."""
    ids, after = [], None
    while len(ids) < limit:
        wanted = min(500, limit - len(ids))
        found = chosen.page(scope, after=after, limit=wanted)
        ids += [str(listed.job.message_id) for listed in found]
        if len(found) < wanted:
            break
        after = (found[-1].listed_at, str(found[-1].job.message_id))
    return ids


@router.post("/jobs/retry")
async def bulk_retry(request: Request, who: Visitor = Depends(visitor), csrf: str = Form(default="", max_length=200),
                     confirmed: str = Form(default=""), queue: str = Form(default="", max_length=100),
                     actor: str = Form(default="", max_length=200), tenant: str = Form(default="", max_length=63),
                     error: str = Form(default="", max_length=200), since: str = Form(default="", max_length=40),
                     until: str = Form(default="", max_length=40), limit: int = Form(default=1000, ge=1, le=10_000)):
    """Retry the dead jobs the Jobs page's filter selects (its state taken as dead), each as the
    API's retry does it (console/verbs/jobs.py retry_with: one job event per job, audited)."""
    check_csrf(request, who, csrf)
    chosen = JobFilter("dead", queue, actor, tenant, error, since, until).checked()
    scope = chosen.scope_for(who)
    fields = {**{k: v for k, v in asdict(chosen).items() if k != "state"}, "limit": limit}
    back = "/dashboard/jobs?" + "&".join(f"{k}={quote(str(v))}" for k, v in asdict(chosen).items() if v)
    where = source(request)

    def select_and_maybe_retry():
        ids = _dead_ids(chosen, scope, limit)
        if confirmed != "yes":
            return ids, 0
        from storage import jobs

        done = 0
        for job_id in ids:
            try:
                job = jobs.get(job_id)
                scopes.authorize(who.principal, "operate", tenant_id=job.tenant_id)
                job_verbs.retry_with(job_id, by=who.actor, source=where)
                done += 1
            except (jobs.JobStateConflict, jobs.JobNotFound):
                continue  # retried or pruned meanwhile
        return ids, done

    ids, done = await request.app.state.pool.run(select_and_maybe_retry)
    if confirmed != "yes":
        chosen_text = ", ".join(f"{k} = {v}" for k, v in fields.items() if v and k != "limit") or "no other filter"
        return _confirm(request, who, title="Bulk retry of dead jobs", back=back, fields=fields,
                        what=f"Queue again the {len(ids)} dead job(s) this filter selects ({chosen_text}; "
                             f"at most {limit})")
    return _done(request, back, f"{done} of {len(ids)} dead job(s) queued again")


@router.post("/schedules/{key}/{action}")
async def schedule_action(request: Request, key: str = Path(min_length=1, max_length=200),
                          action: str = Path(pattern="^(pause|resume|run)$"), who: Visitor = Depends(visitor),
                          csrf: str = Form(default="", max_length=200), confirmed: str = Form(default="")):
    from scheduler import ticks

    check_csrf(request, who, csrf)
    scopes.authorize(who.principal, "operate")
    if confirmed != "yes":
        what = {"pause": "Pause this schedule: its ticks are skipped until it is resumed",
                "resume": "Resume this schedule from its next fire time (paused ticks are not caught up)",
                "run": "Run this schedule once now (an extra tick)"}[action]
        return _confirm(request, who, title=f"{action.capitalize()} schedule {key}", what=what, fields={},
                        back="/dashboard/schedules")

    def act() -> str:
        if action == "run":
            return f"schedule {key} ran now: job {ticks.run_now(key, by=who.actor, source=source(request)).job_id}"
        ticks.set_paused(key, action == "pause", by=who.actor, source=source(request))
        return f"schedule {key} {'paused' if action == 'pause' else 'resumed'}"

    return _done(request, "/dashboard/schedules", await request.app.state.pool.run(act))


@router.post("/queues/{name}/{action}")
async def queue_action(request: Request, name: str = Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$"),
                       action: str = Path(pattern="^(pause|resume)$"), who: Visitor = Depends(visitor),
                       csrf: str = Form(default="", max_length=200), confirmed: str = Form(default="")):
    check_csrf(request, who, csrf)
    scopes.authorize(who.principal, "operate")
    if confirmed != "yes":
        what = ("Pause this queue: workers stop claiming from it (jobs keep arriving)" if action == "pause"
                else "Resume this queue: workers claim from it again")
        return _confirm(request, who, title=f"{action.capitalize()} queue {name}", what=what, fields={},
                        back="/dashboard/queues")
    await request.app.state.pool.run(queues.set_paused, name, action == "pause", by=who.actor, source=source(request))
    return _done(request, "/dashboard/queues", f"queue {name} {'paused' if action == 'pause' else 'resumed'}")

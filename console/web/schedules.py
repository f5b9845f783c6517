"""`/api/schedules`: the cron schedules (scheduler/ticks.py's view, as `lamplighter schedule
--json` shows it) and their runtime control: pause, resume, run now. Schedules belong to the
platform: a token bound to a tenant finds none (404). Each action is an audit row."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from console.verbs import schedule as schedule_verbs
from console.web.auth import holding
from console.web.errors import responses
from domain import scopes
from domain.scopes import Principal

router = APIRouter(prefix="/api/schedules", tags=["schedules"])

ScheduleKey = Path(min_length=1, max_length=200)


class ScheduleAction(BaseModel):
    key: str
    result: str
    job_id: str | None = None


@router.get("", response_model=list[dict[str, Any]], summary="Schedules with their next fire times and last run",
            responses=responses(401, 403, 404, 503))
async def list_schedules(request: Request, who: Principal = Depends(holding("read"))):
    scopes.authorize(who, "read")

    def read():
        from scheduler import ticks

        return [schedule_verbs.as_json(view) for view in ticks.overview()]

    return await request.app.state.pool.run(read)


async def _set_paused(request: Request, who: Principal, key: str, paused: bool) -> dict:
    from scheduler import ticks

    scopes.authorize(who, "operate")
    await request.app.state.pool.run(ticks.set_paused, key, paused, by=who.actor)
    return {"key": key, "result": "paused" if paused else "resumed"}


@router.post("/{key}/pause", response_model=ScheduleAction, summary="Pause a schedule",
             responses=responses(401, 403, 404, 422, 503))
async def pause_schedule(request: Request, key: str = ScheduleKey, who: Principal = Depends(holding("operate"))):
    return await _set_paused(request, who, key, True)


@router.post("/{key}/resume", response_model=ScheduleAction, summary="Resume a schedule",
             responses=responses(401, 403, 404, 422, 503))
async def resume_schedule(request: Request, key: str = ScheduleKey, who: Principal = Depends(holding("operate"))):
    return await _set_paused(request, who, key, False)


@router.post("/{key}/run", response_model=ScheduleAction, summary="Run a schedule now (an extra tick)",
             responses=responses(401, 403, 404, 409, 422, 503))
async def run_schedule(request: Request, key: str = ScheduleKey, who: Principal = Depends(holding("operate"))):
    from scheduler import ticks

    scopes.authorize(who, "operate")
    result = await request.app.state.pool.run(ticks.run_now, key, by=who.actor)
    return {"key": key, "result": "enqueued", "job_id": str(result.job_id) if result.job_id else None}

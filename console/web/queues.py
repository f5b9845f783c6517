"""`/api/queues`: statistics per queue and actor (superadmins only: they span every tenant) and
pause / resume of a queue (platform tokens with ``operate``; each an audit row)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from console.verbs import stats as stats_verbs
from console.web.auth import client_address, holding, superadmin
from console.web.errors import responses
from domain import queues, scopes
from domain.scopes import Principal

router = APIRouter(prefix="/api/queues", tags=["queues"])

QueueName = Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")


class ActorFigures(BaseModel):
    queue: str
    actor: str
    waiting: int
    scheduled: int
    running: int
    completed: int
    failed: int
    dead: int
    oldest_waiting_seconds: float
    run_ms_p50: float | None
    run_ms_p95: float | None
    estimated: list[str] = Field(default_factory=list, description=(
        "the figures that are the query planner's estimates, not counts: waiting, scheduled or "
        "dead when a queue holds more than 20,000 such jobs (storage.queues.EXACT_UP_TO), "
        "completed and failed when the window holds more than 20,000 attempts"))


class QueueStats(BaseModel):
    window_seconds: float
    actors: list[ActorFigures]


class QueueAction(BaseModel):
    queue: str
    result: str


@router.get("/stats", response_model=QueueStats, summary="Per queue and actor: depth, outcomes, run times",
            responses=responses(401, 403, 422, 503))
async def queue_stats(request: Request, who: Principal = Depends(superadmin),
                      window: float | None = Query(default=None, gt=0, le=30 * 86400,
                                                   description="seconds (default LAMPLIGHTER_FAILED_WINDOW)")):
    """Waiting, scheduled, running and dead now; completed and failed attempts within the
    window, with their run time's p50 and p95 (ms); the oldest waiting job's age. Past 20,000
    jobs of a queue, its figures are estimates, named in `estimated`. Computed in
    SQL (storage/sql/stats.sql); `lamplighter stats --by-actor` prints the same view."""
    seconds = window or request.app.state.settings.failed_window
    view = await request.app.state.pool.run(stats_verbs.actor_stats_view, window_seconds=seconds)
    return {"window_seconds": view.window_seconds,
            "actors": [{"queue": a.queue_name, "actor": a.actor_name, "waiting": a.waiting, "scheduled": a.scheduled,
                        "running": a.running, "completed": a.completed, "failed": a.failed, "dead": a.dead,
                        "oldest_waiting_seconds": a.oldest_waiting_age, "run_ms_p50": a.run_ms_p50,
                        "run_ms_p95": a.run_ms_p95, "estimated": list(a.estimated)} for a in view.actors]}


async def _set_paused(request: Request, who: Principal, name: str, paused: bool) -> dict:
    scopes.authorize(who, "operate")
    await request.app.state.pool.run(queues.set_paused, name, paused, by=who.actor, source=client_address(request))
    return {"queue": name, "result": "paused" if paused else "resumed"}


@router.post("/{name}/pause", response_model=QueueAction, summary="Pause a queue (jobs keep arriving)",
             responses=responses(401, 403, 404, 422, 503))
async def pause_queue(request: Request, name: str = QueueName, who: Principal = Depends(holding("operate"))):
    return await _set_paused(request, who, name, True)


@router.post("/{name}/resume", response_model=QueueAction, summary="Resume a queue",
             responses=responses(401, 403, 404, 422, 503))
async def resume_queue(request: Request, name: str = QueueName, who: Principal = Depends(holding("operate"))):
    return await _set_paused(request, who, name, False)

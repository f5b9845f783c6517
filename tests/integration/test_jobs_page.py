"""The jobs page (storage.jobs.page: the CLI's list, GET /api/jobs, the dashboard) over a history
with many finished jobs: a filter by actor, queue or tenant reads an index in page order, and the
error search's two ways (the newest candidates checked one by one, or the trigram index) give the
same pages."""
from __future__ import annotations

import pytest

from storage import jobs
from storage.tenants import TenantScope, scoped

FILL = """
INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, attempt, enqueued_at,
                            available_at, started_at, finished_at, mtime, tenant_id, last_error)
SELECT gen_random_uuid(), CASE WHEN i %% 500 = 0 THEN 'rare' ELSE 'maintenance' END, 'area.job_' || (i %% 40), '{}'::jsonb,
       CASE WHEN i %% 10 = 0 THEN 'dead' ELSE 'completed' END, 1, t, t, t, t, t,
       'tenant_' || (i %% 200), CASE WHEN i %% 10 = 0 THEN 'RuntimeError: ' || %(error)s END
FROM generate_series(1, %(rows)s) AS i,
     LATERAL (SELECT lamplighter.now() - make_interval(secs => i) AS t) AS at_;
INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, started_at, finished_at, duration_ms,
                                     outcome, error_type, error_message)
SELECT message_id, 1, actor_name, queue_name, started_at, finished_at, 5, 'dead', 'RuntimeError',
       substr(last_error, 15)
FROM dramatiq.queue WHERE state = 'dead';
"""


def _page(sql, **filters):
    params = scoped(filters.pop("scope", TenantScope.every()), **{
        "states": list(jobs.STATES), "tenant": None, "actor": None, "queue": None, "error": None, "since": None,
        "until": None, "after_at": None, "after_id": None, "limit": 50, **filters})
    return "\n".join(line for (line,) in sql("EXPLAIN " + jobs.SQL["job_page"], params))


def test_a_rare_actor_queue_or_tenant_pages_through_its_own_index(broker, sql):
    sql(FILL, {"rows": 20_000, "error": "upstream down"})
    sql("ANALYZE dramatiq.queue")
    # At 20,000 rows reading a state's few thousand and sorting them is still cheap; at 10M it is
    # not (bench/history_scale.py). Ask which index can give the page in its order.
    sql("SET enable_sort = off")

    # An actor without dead jobs on the dead page: walking queue_finished_idx would read every dead job.
    plan = _page(sql, states=["dead"], actor="area.job_7")
    assert "queue_finished_actor_idx" in plan, plan
    # A queue with one job in 500.
    plan = _page(sql, queue="rare")
    assert "queue_finished_queue_idx" in plan, plan
    # One tenant's page among 200: walking the finished jobs would read every other tenant's.
    plan = _page(sql, scope=TenantScope.of("tenant_7"))
    assert "queue_finished_tenant_idx" in plan, plan

    listed = jobs.page(scope=TenantScope.of("tenant_7"), limit=20)
    assert len(listed) == 20 and {e.job.tenant_id for e in listed} == {"tenant_7"}
    assert [e.listed_at for e in listed] == sorted((e.listed_at for e in listed), reverse=True)
    assert jobs.page(scope=TenantScope.every(), states=["dead"], actor="area.job_7") == []
    assert {e.job.queue_name for e in jobs.page(scope=TenantScope.every(), queue="rare")} == {"rare"}


@pytest.mark.parametrize("walk", [1, 7, 13, 1000])
def test_the_error_search_gives_the_same_pages_whichever_way_it_answers(broker, sql, monkeypatch, walk):
    sql(FILL, {"rows": 400, "error": "upstream down"})  # 40 dead jobs, the newest first
    rare = [job_id for (job_id,) in sql("SELECT message_id::text FROM dramatiq.queue WHERE state = 'dead' "
                                        "ORDER BY finished_at DESC")][5::12]  # 3 of them, spread out
    sql("UPDATE lamplighter.job_history SET error_message = 'disk quota exceeded' WHERE job_id::text = ANY (%s)",
        (rare,))
    monkeypatch.setattr(jobs, "ERROR_WALK", walk)  # 1: the trigram index answers; 1000: the walk does

    def every_page(error, limit):
        seen, after = [], None
        while True:
            listed = jobs.page(scope=TenantScope.every(), error=error, after=after, limit=limit)
            seen += [str(e.job.message_id) for e in listed]
            if len(listed) < limit:
                return seen
            after = (listed[-1].listed_at, str(listed[-1].job.message_id))

    assert every_page("QUOTA", 3) == rare
    assert every_page("disk quota", 50) == rare
    common = every_page("upstream", 5)
    assert len(rare) == 3 and len(common) == 37 and not set(common) & set(rare)
    assert every_page("no such error", 10) == []


def test_the_newest_waiting_jobs_come_from_their_own_index_not_a_sort_of_the_backlog(broker, sql):
    """A backlog of waiting jobs: the page's waiting branch reads queue_waiting_page_idx (0025)
    newest first and stops at the page, instead of sorting every waiting job (a million: 1-2 s,
    bench/overload.py)."""
    sql("INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, enqueued_at, available_at) "
        "SELECT gen_random_uuid(), 'maintenance', 'maintenance.ping', '{}'::jsonb, 'queued', t, t "
        "FROM generate_series(1, 50000) AS i, LATERAL (SELECT lamplighter.now() - make_interval(secs => i) AS t) AS at_")
    sql("ANALYZE dramatiq.queue")
    plan = _page(sql)  # no SET enable_sort: the planner must prefer the index on its own
    assert "queue_waiting_page_idx" in plan, plan
    listed = jobs.page(scope=TenantScope.every(), limit=50)
    assert len(listed) == 50 and {e.job.state for e in listed} == {"queued"}
    assert [e.listed_at for e in listed] == sorted((e.listed_at for e in listed), reverse=True)
    following = jobs.page(scope=TenantScope.every(), limit=50, after=(listed[-1].listed_at, listed[-1].job.message_id))
    assert following and following[0].listed_at <= listed[-1].listed_at
    assert not {e.job.message_id for e in following} & {e.job.message_id for e in listed}

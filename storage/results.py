"""dramatiq's results on PostgreSQL: ``message.get_result(block=True)`` without Redis.

The worker stores a result with the job's finish, in the same statement (storage/engine's
Results middleware; ``kept`` in storage/sql/jobs.sql job_finish_many), for actors declared with
``store_results=True``; a job that ends dead or cancelled stores dramatiq's wrapped exception,
which ``get_result`` raises as :class:`dramatiq.results.ResultFailure`. Rows live in
lamplighter.job_results under dramatiq's message key until their TTL (``result_ttl``, by the
database clock); :func:`prune` deletes expired ones. A blocking ``get_result`` waits on LISTEN
(storage/listener.py), woken by the row's trigger, not by polling.
"""
from __future__ import annotations

import json
import threading
import time

import psycopg2
from dramatiq.results import ResultBackend, ResultMissing, ResultTimeout
from dramatiq.results.backend import DEFAULT_TIMEOUT, Missing

from storage import connection, listener
from storage import queries as query_module
from storage import settings as settings_module

CONCERN = "results"
RESULTS_CHANNEL = "lamplighter.results"


class PostgresResultBackend(ResultBackend):
    """dramatiq's ResultBackend on lamplighter.job_results (one autocommit connection per thread)."""

    def __init__(self, *, namespace: str = "dramatiq-results", encoder=None):
        super().__init__(namespace=namespace, encoder=encoder)
        self._local = threading.local()

    def _run(self, name: str, params: dict):
        for tries in (1, 2):
            url = connection.database_url()
            conn = getattr(self._local, "conn", None)
            if conn is None or conn.closed or self._local.url != url:
                conn = connection.raw_connection("results")
                conn.autocommit = True
                self._local.conn, self._local.url = conn, url
            try:
                return query_module.execute(conn.cursor(), CONCERN, name, params,
                                            prepare=settings_module.get().prepared_statements)
            except (psycopg2.OperationalError, psycopg2.InterfaceError, query_module.StalePreparedStatement):
                conn.close()
                if tries == 2:
                    raise

    def _get(self, message_key: str):
        row = self._run("job_result_get", {"message_key": message_key}).fetchone()
        return Missing if row is None else row[0]

    def _store(self, message_key: str, result, ttl: int) -> None:
        self._run("job_result_store", {"message_key": message_key, "result": json.dumps(result), "ttl": ttl})

    def get_result(self, message, *, block: bool = False, timeout: int | None = None):
        """dramatiq's get_result; blocking waits for the result's NOTIFY instead of polling."""
        key = self.build_message_key(message)
        if not block:
            result = self._get(key)
            if result is Missing:
                raise ResultMissing(message)
            return self.unwrap_result(result)
        deadline = time.monotonic() + (DEFAULT_TIMEOUT if timeout is None else timeout) / 1000
        with listener.get().watching(RESULTS_CHANNEL, [key]) as event:
            while True:
                event.clear()
                result = self._get(key)
                if result is not Missing:
                    return self.unwrap_result(result)
                left = deadline - time.monotonic()
                if left <= 0 or not event.wait(left):
                    raise ResultTimeout(message)


def prune(batch_size: int) -> int:
    """Delete one batch of expired results; returns how many."""
    return query_module.run(query_module.queries(CONCERN), "job_result_prune", {"batch_size": batch_size}).rowcount

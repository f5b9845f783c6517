"""Enqueue wake-ups: which idle consumer answers a NOTIFY, so that one job wakes one claim.

Every enqueue statement sends one NOTIFY per queue it wrote to (storage/sql/jobs.sql), with the
payload ``t<ticket>:<jobs>``: a random ticket and how many jobs it brought. Every idle consumer
of the queue receives it. Each consumer knows its place among the queue's live workers (ids in
order, refreshed every heartbeat, storage/sql/workers.sql ``worker_peers``):

* the consumers at distance ``d = (place - ticket) mod peers`` below ``ceil(jobs / claim_batch)``
  claim at once, then, once the claimed jobs are handed out, announce ``c<ticket>`` on the channel;
* the others wait ``STAGGER * (d - needed + 1)`` seconds (at most the poll interval) and claim
  only if no announcement came meanwhile. A busy, stopping or dead first choice delays the job
  by tens of milliseconds; nothing waits on it for longer.

So an idle fleet of N workers answers a trickle of single jobs with about one claim each, not
N (all but one finding nothing), and a bulk enqueue of many batches still wakes as many
consumers as it has batches (lamplighter.enqueue(), unique inserts and redrives included:
``lamplighter.wake()``, migration 0006). Any other payload (a stock dramatiq-pg client's NOTIFY
carries the whole message) wakes every consumer at once.
"""
from __future__ import annotations

from dataclasses import dataclass

STAGGER = 0.02  # seconds between the consumers that stand in, one after the other


@dataclass(frozen=True)
class Wake:
    kind: str  # "now" (claim at once), "later" (claim after delay unless taken), "taken"
    ticket: str | None = None
    delay: float = 0.0


NOW = Wake("now")


def announcement(ticket: str) -> str:
    """The payload that tells the other consumers a ticket was answered."""
    return "c" + ticket


def read(payload: str, place: tuple[int, int] | None, claim_batch: int) -> Wake:
    """What a consumer at ``place`` = (its index, how many workers consume the queue) does
    with a notification."""
    if payload.startswith("c") and payload[1:].isdigit():
        return Wake("taken", payload[1:])
    ticket, _, jobs = payload[1:].partition(":")
    if not (payload.startswith("t") and ticket.isdigit() and jobs.isdigit()):
        return NOW
    if place is None or place[1] <= 1:
        return Wake("now", ticket)
    index, peers = place
    needed = max(1, -(-int(jobs) // max(1, claim_batch)))
    distance = (index - int(ticket)) % peers
    if distance < needed:
        return Wake("now", ticket)
    return Wake("later", ticket, STAGGER * (distance - needed + 1))

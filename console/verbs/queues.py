"""`lamplighter queue pause|resume QUEUE`: a paused queue is not claimed from; jobs keep arriving.
Its figures are `lamplighter stats` (console/verbs/stats.py)."""
from __future__ import annotations

from console import cli


def register(verbs) -> None:
    q = verbs.add_parser("queue", help="pause or resume a queue")
    q.add_argument("action", choices=("pause", "resume"))
    q.add_argument("queue", metavar="QUEUE", type=cli.queue_name)
    q.set_defaults(run=cmd_queue)


def cmd_queue(args, settings) -> int:
    from domain import queues

    queues.set_paused(args.queue, args.action == "pause", by=cli.operator())
    print(f"queue {args.queue} {'paused' if args.action == 'pause' else 'resumed'}")
    return 0

"""Statistics on the queue's (state, queue, actor) combinations, for the estimated counts, and
the view of the queues with queued jobs (a skip scan) the queue figures start from."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0026_queue_count_statistics.sql")

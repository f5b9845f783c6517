"""The CLI's output on a pipe the reader closes early (`lamplighter jobs | head`)."""
import os
import subprocess
import sys


def test_a_closed_pipe_ends_the_listing_quietly(broker, database_url):
    import actors

    broker.send_many(actors.maintenance.ping, [{"note": f"row {i}"} for i in range(1500)])
    env = {**os.environ, "DATABASE_URL": database_url}
    # The reader takes one line and goes away; the listing is far more than a pipe buffer.
    proc = subprocess.Popen([sys.executable, "-m", "console", "jobs", "--limit", "1500"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert stderr == "", stderr  # no traceback, no "Exception ignored ... BrokenPipeError"

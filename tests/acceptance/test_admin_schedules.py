"""Every admin job's schedule in `lamplighter schedule`, with its next fire times, as a release
made on 25 March 2027 at 11:58:30 UTC would list them, the reports in Europe/Berlin: the
Sunday entry crosses the change to summer time (28 March, 02:00 does not exist: it fires at 03:00
CEST) and a month boundary, the 1st-of-month entries cross into April and May."""
import json
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import psycopg2

from tests.conftest import ROOT, lamplighter_env, with_database

RELEASED_AT = datetime(2027, 3, 25, 11, 58, 30, tzinfo=timezone.utc)

EXPECTED = {  # key: (zone, next three fire times in UTC)
    "sessions.prune_expired": ("UTC", ["2027-03-25T12:40", "2027-03-25T18:40", "2027-03-26T00:40"]),
    "tokens.prune_expired": ("UTC", ["2027-03-26T03:00", "2027-03-27T03:00", "2027-03-28T03:00"]),
    "audit.archive": ("UTC", ["2027-04-01T04:00", "2027-05-01T04:00", "2027-06-01T04:00"]),
    "analytics.rollup": ("UTC", ["2027-03-25T12:05", "2027-03-25T13:05", "2027-03-25T14:05"]),
    "reports.daily": ("Europe/Berlin", ["2027-03-26T00:00", "2027-03-27T00:00", "2027-03-28T00:00"]),
    "reports.weekly": ("Europe/Berlin", ["2027-03-28T01:00", "2027-04-04T00:00", "2027-04-11T00:00"]),
    "reports.monthly_compliance": ("Europe/Berlin", ["2027-04-01T00:30", "2027-05-01T00:30", "2027-06-01T00:30"]),
    "notifications.expiring_credentials": ("UTC", ["2027-03-26T09:00", "2027-03-27T09:00", "2027-03-28T09:00"]),
    "notifications.security_alerts": ("UTC", ["2027-03-25T12:00", "2027-03-25T12:15", "2027-03-25T12:30"]),
    "alerts.failed_jobs": ("UTC", ["2027-03-25T11:59", "2027-03-25T12:00", "2027-03-25T12:01"]),
}


def test_admin_schedules_and_their_next_fire_times_across_a_month_and_a_dst_change(server_url):
    name = f"lamplighter_sched_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        offset = (RELEASED_AT - datetime.now(timezone.utc)).total_seconds()
        env = lamplighter_env(DATABASE_URL=with_database(server_url, name), LAMPLIGHTER_CLOCK_OFFSET=f"{offset:.3f}",
                              LAMPLIGHTER_REPORTS_ZONE="Europe/Berlin")

        def cli(*args):
            done = subprocess.run([sys.executable, "-m", "console", *args], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            return done.stdout

        cli("migrate")
        listed = {s["key"]: s for s in json.loads(cli("schedule", "--json"))}
        found = {key: (listed[key]["zone"], [datetime.fromisoformat(t).strftime("%Y-%m-%dT%H:%M")
                                             for t in listed[key]["next_fire_times_utc"]])
                 for key in EXPECTED if key in listed}
        assert found == EXPECTED
        assert all(listed[key]["state"] == "enabled" for key in EXPECTED)
        # In the zone: the weekly report at 02:00 CET, then (no 02:00 on the 28th) 03:00 CEST, then 02:00 CEST.
        assert listed["reports.weekly"]["next_fire_times"][:2] == ["2027-03-28T03:00:00+02:00",
                                                                   "2027-04-04T02:00:00+02:00"]
        assert listed["reports.monthly_compliance"]["next_fire_times"][0] == "2027-04-01T02:30:00+02:00"
        text = cli("schedule")
        assert "reports.weekly" in text and "2027-03-28 03:00 CEST (01:00 UTC)" in text
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

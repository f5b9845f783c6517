"""The public surface that other services depend on, made visible: actor names and options,
the Procfile, and the import layers."""
import subprocess
import sys
from pathlib import Path

import dramatiq

ROOT = Path(__file__).resolve().parents[2]

# Renaming an actor strands its queued messages: change this list on purpose, with a migration path.
EXPECTED_ACTORS = {
    "maintenance.ping": {"queue_name": "maintenance", "time_limit": 60_000, "max_retries": 3},
    "maintenance.rotate_encryption_keys": {"queue_name": "maintenance", "time_limit": 1_800_000, "max_retries": 3},
    "accounts.retry_managed_account_creations": {"queue_name": "accounts", "time_limit": 300_000, "max_retries": 0},
    "invitations.prune_expired": {"queue_name": "maintenance", "time_limit": 1_800_000, "max_retries": 3},
    "maintenance.prune_jobs": {"queue_name": "maintenance", "time_limit": 1_800_000, "max_retries": 3},
    "maintenance.prune_results_and_limits": {"queue_name": "maintenance", "time_limit": 600_000, "max_retries": 3},
    "audit.create_partitions": {"queue_name": "maintenance", "time_limit": 300_000, "max_retries": 3},
    "sessions.prune_expired": {"queue_name": "maintenance", "time_limit": 1_800_000, "max_retries": 3},
    "tokens.prune_expired": {"queue_name": "maintenance", "time_limit": 1_800_000, "max_retries": 3},
    "notifications.deliver": {"queue_name": "notifications", "time_limit": 120_000, "max_retries": 6},
    "notifications.requeue_undelivered": {"queue_name": "notifications", "time_limit": 300_000, "max_retries": 0},
    "audit.archive": {"queue_name": "maintenance", "time_limit": 3_600_000, "max_retries": 3},
    "analytics.rollup": {"queue_name": "maintenance", "time_limit": 900_000, "max_retries": 3},
    "reports.daily": {"queue_name": "maintenance", "time_limit": 900_000, "max_retries": 3},
    "reports.weekly": {"queue_name": "maintenance", "time_limit": 900_000, "max_retries": 3},
    "reports.monthly_compliance": {"queue_name": "maintenance", "time_limit": 1_800_000, "max_retries": 3},
    "notifications.expiring_credentials": {"queue_name": "notifications", "time_limit": 600_000, "max_retries": 3},
    "notifications.security_alerts": {"queue_name": "notifications", "time_limit": 600_000, "max_retries": 3},
    "alerts.failed_jobs": {"queue_name": "maintenance", "time_limit": 300_000, "max_retries": 0},
    "monitoring.health_check": {"queue_name": "monitoring", "time_limit": 60_000, "max_retries": 0},
    "monitoring.performance": {"queue_name": "monitoring", "time_limit": 120_000, "max_retries": 0},
    "backups.create": {"queue_name": "maintenance", "time_limit": 10_800_000, "max_retries": 3},
    "licenses.check": {"queue_name": "maintenance", "time_limit": 600_000, "max_retries": 3},
    "database.optimize": {"queue_name": "maintenance", "time_limit": 14_400_000, "max_retries": 0},
    "integrations.refresh_tokens": {"queue_name": "integrations", "time_limit": 120_000, "max_retries": 10},
    "integrations.check_health": {"queue_name": "integrations", "time_limit": 60_000, "max_retries": 0},
    "integrations.index_files": {"queue_name": "integrations", "time_limit": 600_000, "max_retries": 3},
    "integrations.sweep_health": {"queue_name": "integrations", "time_limit": 600_000, "max_retries": 0},
    "integrations.sweep_index": {"queue_name": "integrations", "time_limit": 600_000, "max_retries": 0},
    "idempotency_keys.prune_expired": {"queue_name": "maintenance", "time_limit": 1_800_000, "max_retries": 3},
    "federation.generate_files": {"queue_name": "federation", "time_limit": 300_000, "max_retries": 5},
    "federation.refresh_cache": {"queue_name": "federation", "time_limit": 120_000, "max_retries": 3},
    "federation.advance_rotations": {"queue_name": "federation", "time_limit": 300_000, "max_retries": 0},
    "documents.classify": {"queue_name": "documents", "time_limit": 300_000, "max_retries": 3},
    "documents.retry_failed": {"queue_name": "documents", "time_limit": 300_000, "max_retries": 3},
    "documents.cleanup_expired": {"queue_name": "documents", "time_limit": 1_800_000, "max_retries": 3},
    "quotas.check": {"queue_name": "documents", "time_limit": 300_000, "max_retries": 3},
    "tenants.suspend_overdue": {"queue_name": "maintenance", "time_limit": 300_000, "max_retries": 3},
    "billing.report_usage": {"queue_name": "billing", "time_limit": 120_000, "max_retries": 7},
    "webhooks.deliver": {"queue_name": "webhooks", "time_limit": 120_000, "max_retries": 9},
}


def test_every_actor_declares_name_queue_time_limit_and_retries():
    import actors

    declared = {}
    for name in actors.broker.get_declared_actors():
        if name.startswith("tests."):
            continue
        actor = actors.broker.get_actor(name)
        declared[name] = {"queue_name": actor.queue_name, "time_limit": actor.options.get("time_limit"),
                          "max_retries": actor.options.get("max_retries")}
    assert declared == EXPECTED_ACTORS


def test_no_default_prometheus_middleware():
    import actors

    names = [type(m).__name__ for m in actors.broker.middleware]
    assert "Prometheus" not in names
    assert {"Retries", "TimeLimit", "AgeLimit", "Callbacks", "ShutdownNotifications"} <= set(names)


def test_procfile_matches_lamplighter_up():
    from console.processes import PROCESSES

    entries = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert entries.pop("release") == "lamplighter migrate"
    assert entries == {name: "lamplighter " + " ".join(verb) for name, verb in PROCESSES.items()}


def test_import_layers_hold():
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken" in result.stdout


def test_no_product_module_is_over_450_lines():
    """A module that grows past this holds more than one job: split it by noun."""
    long = {str(path.relative_to(ROOT)): n
            for package in ("actors", "console", "domain", "scheduler", "storage")
            for path in (ROOT / package).rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 450}
    assert long == {}

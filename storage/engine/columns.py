"""Which options become job columns (not message options), and which an actor may declare as
its defaults."""
from __future__ import annotations

# Options a sender may give (send_with_options) that become job columns, not message options.
COLUMN_OPTIONS = ("unique_key", "unique_states", "unique_on_conflict", "concurrency_key", "concurrency_limit",
                  "tenant_id", "correlation_id", "priority")
# Of those, the ones an actor may declare as its defaults.
ACTOR_COLUMN_OPTIONS = ("unique_states", "unique_on_conflict", "concurrency_key", "concurrency_limit")

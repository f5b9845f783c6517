"""Job ids: time-ordered (version 7) UUIDs, for every way a job is made (sends, bulk sends,
cron ticks; SQL enqueue has lamplighter.new_message_id(), migration 0024)."""
from __future__ import annotations

import os
import time


def new_message_ids(count: int) -> list[str]:
    """``count`` time-ordered (version 7) UUIDs as text: the current millisecond, then random
    bits from one read of the OS's random source (a third of the cost of str(uuid.uuid4())
    each, which dominated bulk sends). A bulk batch's ids all land at the right edge of the
    primary key instead of on a random leaf page each: bulk sends 59k -> 68k jobs/s here."""
    raw = os.urandom(16 * count).hex()
    now = f"{time.time_ns() // 1_000_000:012x}"
    stamp = f"{now[:8]}-{now[8:]}-7"
    ids = []
    for i in range(0, 32 * count, 32):
        h = raw[i:i + 32]
        ids.append(f"{stamp}{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}")
    return ids

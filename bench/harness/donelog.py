"""Tails the per-process done logs written by systems/_common/benchjob.py."""
import os


class DoneTracker:
    def __init__(self, directory, n_ids, keep_records=False):
        self.dir = directory
        self.counts = bytearray(n_ids)
        self.offsets = {}
        self.partial = {}
        self.unique = 0
        self.total = 0
        self.first_start = None
        self.last_start = None
        self.last_unique_start = None
        self.keep = keep_records
        self.records = []  # (id, enq_ts, start_ts) when keep_records

    def poll(self):
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            if not name.startswith("done-"):
                continue
            path = os.path.join(self.dir, name)
            off = self.offsets.get(name, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(off)
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            self.offsets[name] = off + len(data)
            data = self.partial.pop(name, b"") + data
            lines = data.split(b"\n")
            if lines[-1]:
                self.partial[name] = lines[-1]
            for line in lines[:-1]:
                parts = line.split()
                if len(parts) != 3:
                    continue
                jid = int(parts[0])
                st = float(parts[2])
                self.total += 1
                if 0 <= jid < len(self.counts):
                    c = self.counts[jid]
                    if c == 0:
                        self.unique += 1
                        if self.last_unique_start is None or st > self.last_unique_start:
                            self.last_unique_start = st
                    if c < 255:
                        self.counts[jid] = c + 1
                if self.first_start is None or st < self.first_start:
                    self.first_start = st
                if self.last_start is None or st > self.last_start:
                    self.last_start = st
                if self.keep:
                    self.records.append((jid, float(parts[1]), st))

    def done_in(self, lo, hi):
        return sum(1 for i in range(lo, hi) if self.counts[i])

    def missing_in(self, lo, hi):
        return [i for i in range(lo, hi) if not self.counts[i]]

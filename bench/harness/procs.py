"""Worker process groups: start, RSS of the process tree, kill -9, graceful stop, and one
process of the tree paused (SIGSTOP) and resumed."""
import os
import signal
import subprocess
import time

import psutil


class Workers:
    def __init__(self, argv, copies, env, cwd, logdir, tag):
        self.argv, self.copies, self.env, self.cwd = argv, copies, env, cwd
        self.logdir, self.tag = logdir, tag
        self.procs = []
        self.generation = 0

    def start(self):
        self.generation += 1
        for i in range(self.copies):
            log = open(os.path.join(self.logdir, f"{self.tag}-g{self.generation}-w{i}.log"), "wb")
            p = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
            log.close()
            self.procs.append(p)

    def tree(self):
        out = []
        for p in self.procs:
            if p.poll() is not None:
                continue
            try:
                pp = psutil.Process(p.pid)
                out.append(pp)
                out.extend(pp.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        return out

    def rss(self):
        total = 0
        for pp in self.tree():
            try:
                total += pp.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def alive(self):
        return [p for p in self.procs if p.poll() is None]

    def _signal_all(self, sig):
        for p in self.procs:
            try:
                os.killpg(p.pid, sig)  # each copy leads its own session / group
            except ProcessLookupError:
                pass

    def pause(self, pid):
        """SIGSTOP one process of the tree (e.g. one of dramatiq's worker processes): it keeps
        its connections and its jobs, and does nothing, heartbeat included, until resume()."""
        psutil.Process(pid).suspend()
        return time.time()

    def resume(self, pid):
        psutil.Process(pid).resume()
        return time.time()

    def kill9(self):
        victims = self.tree()
        self._signal_all(signal.SIGKILL)
        for pp in victims:  # children that left the group, if any
            try:
                pp.kill()
            except psutil.NoSuchProcess:
                pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        psutil.wait_procs(victims, timeout=10)
        self.procs = []

    def stop(self, grace=10.0):
        victims = self.tree()
        self._signal_all(signal.SIGTERM)
        deadline = time.time() + grace
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        self._signal_all(signal.SIGKILL)
        for pp in victims:
            try:
                pp.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=10)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []

"""A background thread per process that survives ``fork``: the token listener's and the replica
monitor's shape (``edge.tokencache.Listener``, ``data.replicas.Monitor``).

A pre-forking server (``pserve ... processes=N``, gunicorn with ``preload_app``) builds the app
once and forks: the parent's threads do not exist in a child. So the thread is not started at
startup but by ``ensure_running``, which the first request of each process calls: a forked
child, whose pid differs, starts its own. ``stop`` (hooked to the engine's disposal) stops it
only in the process that runs it: a forked child's disposal of the pool it inherited
(``db.empty_pool_after_fork``) is not a stop.
"""

import os
import threading

from sqlalchemy import event


class PerProcessThread:
    """Subclasses name their thread (``thread_name``) and loop in ``run`` until ``stopped``."""

    thread_name = "worker"

    def __init__(self, engine):
        self.pid = None
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        event.listen(engine, "engine_disposed", lambda *args: self.stop())

    def ensure_running(self):
        if self.pid == os.getpid() or self.stopped.is_set():
            return
        with self.lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                self.starting()
                thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
                thread.start()

    def starting(self):
        """Before the thread starts in a process: forget what a parent's thread held."""

    def stop(self):
        if self.pid == os.getpid():
            self.stopped.set()

    def run(self):
        raise NotImplementedError

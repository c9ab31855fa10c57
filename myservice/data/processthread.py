"""A background thread per process that survives ``fork``: the token listener's, the replica
monitor's and the log writers' shape (``edge.tokencache.Listener``, ``data.replicas.Monitor``,
``edge.logwriting.Batches``).

A pre-forking server (``pserve ... processes=N``, gunicorn with ``preload_app``) builds the app
once and forks: the parent's threads do not exist in a child. So the thread is not started at
startup but by ``ensure_running``, which every request calls (the first of each process starts
the thread): a forked child, where every such thread is marked not running at the fork, starts
its own. ``stop`` (hooked to the disposal of the engine it serves, if any) stops it only in
the process that runs it: a forked child's disposal of the pool it inherited
(``db.empty_pool_after_fork``) is not a stop.
"""

import os
import threading
import weakref

from sqlalchemy import event

#: Every ``PerProcessThread`` of the process, for ``_forked``.
_instances = weakref.WeakSet()


class PerProcessThread:
    """Subclasses name their thread (``thread_name``) and loop in ``run`` until ``stopped``."""

    thread_name = "worker"

    def __init__(self, engine=None):
        self.pid = None  # of the process that started the thread
        self.running = False  # in this process (a flag, not a pid: no system call per request)
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        if engine is not None:
            event.listen(engine, "engine_disposed", lambda *args: self.stop())
        _instances.add(self)

    def ensure_running(self):
        if self.running or self.stopped.is_set():
            return
        with self.lock:
            if not self.running:
                self.pid = os.getpid()
                self.starting()
                thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
                thread.start()
                self.running = True  # last: another thread sees it only once all is ready

    def starting(self):
        """Before the thread starts in a process: forget what a parent's thread held."""

    def stop(self):
        if self.pid == os.getpid():
            self.stopped.set()

    def run(self):
        raise NotImplementedError


def _forked():
    """In a forked child: no thread of the parent's runs here, nor holds a lock."""
    for instance in list(_instances):
        instance.running = False
        instance.lock = threading.Lock()


os.register_at_fork(after_in_child=_forked)

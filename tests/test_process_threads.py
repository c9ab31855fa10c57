"""A background thread per process (the token listener's, the replica monitor's shape): started
by the first request of each process, a forked child's included, and stopped with its engine."""

import os
import threading

from sqlalchemy import create_engine

from myservice.data.processthread import PerProcessThread

#: Seconds a test waits for a thread to report that it ran.
DEADLINE = 20


class Reporting(PerProcessThread):
    """Sets ``ran`` from its thread, once per start."""

    thread_name = "reporting"

    def __init__(self, engine):
        super().__init__(engine)
        self.ran = threading.Event()
        self.starts = 0

    def starting(self):
        self.starts += 1

    def run(self):
        self.ran.set()


def test_the_thread_starts_once_per_process_and_again_in_a_forked_child():
    engine = create_engine("sqlite://")
    thread = Reporting(engine)
    for _ in range(3):  # every request calls it; the first starts the thread
        thread.ensure_running()
    assert thread.ran.wait(DEADLINE)

    child = os.fork()
    if child == 0:  # the child: exit status 0 when its own thread started and ran
        thread.ran.clear()
        thread.ensure_running()
        thread.ensure_running()
        os._exit(0 if thread.ran.wait(DEADLINE) and thread.starts == 2 else 1)
    _, status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert thread.starts == 1  # the parent's was not started again
    engine.dispose()

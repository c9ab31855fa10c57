"""The thread that watches read replicas: each one's state, lag and replay position.

One per process (``data.processthread``: started by the first read, or ``/health/ready``, in
each process, so a forked worker runs its own). Every ``MONITOR_SECONDS`` it asks the primary
for ``pg_current_wal_lsn()`` and each replica for ``pg_last_wal_replay_lsn()``, each on a
connection of its own (outside the pools) and within ``PROBE_SECONDS`` (the watchdog cuts a
statement left unanswered). A replica's lag is the time since the newest primary sample it
has replayed past, and zero once it has replayed the newest, so an idle primary makes no lag
(comparing ``pg_last_xact_replay_timestamp()`` with the clock would call an idle replica ever
further behind). States: ``up`` (answers, within ``max_replica_lag_ms``), ``lagging`` (answers,
beyond it), ``down`` (does not answer, or failed a request: ``replicas.mark_down_on_failure``).
"""

import logging
import time
from collections import deque

import psycopg

from myservice.data.processthread import PerProcessThread
from myservice.data.timeouts import POSTGRES_CONNECT_ARGS, WATCHDOG

log = logging.getLogger(__name__)

#: Seconds between the monitor's looks; the bound on each of its statements.
MONITOR_SECONDS = 0.25
PROBE_SECONDS = 1.0
#: Primary samples kept for the lag (at MONITOR_SECONDS, a minute).
SAMPLES = 240

UP, LAGGING, DOWN = "up", "lagging", "down"

PRIMARY_POSITION = "SELECT pg_current_wal_lsn()"
REPLAY_POSITION = "SELECT pg_last_wal_replay_lsn()"


def lsn_number(text):
    """``'16/B374D848'`` as an integer; None stays None (not in recovery, or not yet known)."""
    if text is None:
        return None
    high, low = str(text).split("/")
    return (int(high, 16) << 32) | int(low, 16)


class Monitor(PerProcessThread):
    """The thread that keeps each replica's state and lag (module docstring). One per process
    (``data.processthread``): started by the first read, and again in a forked child."""

    thread_name = "replica-monitor"

    def __init__(self, replicas):
        super().__init__(replicas.primary.engine)
        self.replicas = replicas
        self.samples = deque(maxlen=SAMPLES)  # (monotonic time, primary position)
        self.connections = {}  # Database -> its psycopg connection (the monitor's own)

    def starting(self):
        self.connections = {}  # a forked child's are its parent's
        self.samples.clear()

    def run(self):
        while not self.stopped.is_set():
            try:
                self.look()
            except Exception:
                log.exception("replica monitor: a look failed")
            self.stopped.wait(MONITOR_SECONDS)
        for connection in self.connections.values():
            connection.close()

    def look(self):
        """One look at every database: the primary's position, each replica's state and lag."""
        primary = self.probe(self.replicas.primary, PRIMARY_POSITION)
        if primary is not None:
            self.samples.append((time.monotonic(), primary))
        for replica in self.replicas.replicas:
            position = self.probe(replica, REPLAY_POSITION)
            if position is None:
                if replica.state != DOWN:
                    log.warning("%s does not answer: reads go elsewhere", replica.name)
                replica.state = DOWN
                continue
            replica.position = position
            replica.lag_seconds = self.lag(position)
            state = UP if replica.lag_seconds <= self.replicas.max_lag_seconds else LAGGING
            if state != replica.state:
                log.info("%s is %s (lag %.3f s)", replica.name, state, replica.lag_seconds)
            replica.state = state

    def lag(self, position):
        """Seconds a replica at ``position`` may be behind: since the newest primary sample it
        has replayed past, whose writes it has (0 when it has replayed the newest; since the
        oldest kept when it has replayed none of them). What it lacks was written after that
        sample, so it is at most this stale: the bound errs on the safe side."""
        if not self.samples or position >= self.samples[-1][1]:
            return 0.0
        replayed_at = self.samples[0][0]
        for sampled_at, primary in self.samples:
            if primary > position:
                break
            replayed_at = sampled_at
        return time.monotonic() - replayed_at

    def probe(self, database, statement):
        """``statement``'s position on the monitor's own connection to ``database``, within
        ``PROBE_SECONDS`` (the watchdog cuts a statement left unanswered); None if it fails."""
        connection = self.connections.get(database)
        try:
            if connection is None or connection.closed:
                connection = self.connections[database] = self.connect(database.engine)
            WATCHDOG.arm(connection, PROBE_SECONDS)
            try:
                return lsn_number(connection.execute(statement).fetchone()[0])
            finally:
                WATCHDOG.disarm(connection)
        except psycopg.Error as error:
            log.debug("replica monitor: %s: %s", database.name, str(error).strip())
            if connection is not None:
                connection.close()
            self.connections.pop(database, None)
            return None

    def connect(self, engine):
        _, params = engine.dialect.create_connect_args(engine.url)
        params = {**POSTGRES_CONNECT_ARGS, **params, "application_name": "myservice-monitor"}
        return psycopg.connect(**params, autocommit=True, prepare_threshold=None)

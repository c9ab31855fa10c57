"""gunicorn's settings for ``gunicorn --paste production.ini``: myservice in several processes.

gunicorn reads this file from the directory it starts in (elsewhere, name it with ``-c``). The
ini file gives the app (``[app:main]``) and the logging; its ``[server:main]`` is pserve's and
gunicorn ignores it. Options on the command line or in GUNICORN_CMD_ARGS win over these.
"""

import os

from prometheus_client import multiprocess


def cores():
    """The cores this process may run on (a container's CPU set, not the whole host)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


bind = "0.0.0.0:6543"

# Processes: one per core. A process runs Python on one thread at a time (the GIL) and its
# threads cover the time requests wait for PostgreSQL, so processes beyond the cores add
# connections and memory, not throughput. WEB_CONCURRENCY overrides the count. Connections in
# all: workers x threads (the ini's [DEFAULT] workers), below PostgreSQL's max_connections.
workers = int(os.environ.get("WEB_CONCURRENCY") or cores())

# Threads per process: one per pooled connection, from the app's own settings (on_starting).
worker_class = "gthread"

# Build the app once, in the master, before forking: a bad ini or a missing DATABASE_URL stops
# gunicorn at once instead of failing in every worker, and workers start in milliseconds. Each
# forked worker gets an empty connection pool (myservice.data.engine.empty_pool_after_fork). The
# price: `kill -HUP` does not load new code; restart gunicorn to deploy.
preload_app = True

# Seconds the requests in flight get after SIGTERM, as graceful_timeout in [server:main].
graceful_timeout = 20

# Seconds an idle keep-alive connection stays open: above the load balancer's idle timeout
# (AWS ALB: 60 s), or the balancer may send a request down a connection just closed.
keepalive = 120

# No control socket (gunicornc): its default path, ~/.gunicorn/gunicorn.ctl, is one for every
# gunicorn the user runs; signals do what it would (TERM stops, TTIN/TTOU add/remove workers).
control_socket_disable = True

# gunicorn believes X-Forwarded-Proto (https) only from forwarded_allow_ips, 127.0.0.1 unless
# FORWARDED_ALLOW_IPS says otherwise; it takes the host from the Host header, so the proxy must
# pass that through (nginx: proxy_set_header Host $host).


def on_starting(server):
    """Give each worker as many threads as its pool has connections (see production.ini)."""
    settings = server.app.wsgi().registry.settings
    threads = int(settings.get("sqlalchemy.pool_size", 5))  # SQLAlchemy's defaults
    threads += int(settings.get("sqlalchemy.max_overflow", 10))
    server.cfg.set("threads", threads)
    server.log.info(
        "%d workers x %d threads, one pooled connection per thread", server.cfg.workers, threads
    )


def child_exit(server, worker):
    """A worker has exited (or was killed): with PROMETHEUS_MULTIPROC_DIR set, drop its live
    gauge, the connections it had checked out, from the sum a scrape shows; else a worker that
    died mid-request would count its connections for ever (myservice.api.metrics). Its counters
    stay: what it counted happened."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)

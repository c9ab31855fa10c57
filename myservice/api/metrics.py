"""Prometheus metrics at ``GET /metrics`` (prometheus_client).

- ``myservice_requests_total`` and ``myservice_request_duration_seconds`` (a histogram), by
  ``route`` (its name; ``unmatched`` when none matched), ``method`` and ``status``: once per
  request with its final status, from ``myservice.edge.accesslog`` (``Served``).
- ``myservice_request_retries_total`` by route: attempts pyramid_retry threw away and replayed.
- ``myservice_transaction_aborts_total`` by route: attempts whose transaction pyramid_tm rolled
  back, i.e. every attempt that ended in an exception or a 4xx/5xx response (the commit veto),
  replayed ones included.
- ``myservice_database_errors_total`` by ``kind`` (``conflict``, ``unavailable``, ``other``):
  SQLAlchemy errors that reached the error views (``myservice.edge.problems`` classifies them).
- ``myservice_db_connections_checked_out``: pooled connections in use right now.
- With read replicas (``myservice.data.replicas``): ``myservice_replica_state`` (1 for each
  replica's current ``state``: up, lagging, down), ``myservice_replica_lag_seconds``,
  ``myservice_database_reads_total`` by ``database`` (primary, replica-1, ...) and
  ``myservice_read_fallbacks_total`` by ``reason`` (``lag``: no replica was fresh enough;
  ``position``: none had replayed a read's token in time). They are this process's view, read
  at scrape time, also with ``PROMETHEUS_MULTIPROC_DIR`` (where they are not summed).

Several processes (gunicorn, say) each count in their own memory, so a scrape would see one
process's share. With ``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts: an empty
directory, wiped at each deployment), prometheus_client keeps every value in files there and a
scrape of any process adds up all of them; the checked-out gauge then sums live processes only
(``livesum``), which needs ``prometheus_client.multiprocess.mark_process_dead(pid)`` when a
worker exits. In one process the gauge is read from the pool at scrape time, costing nothing
per request; with several it follows the pool's checkout and checkin events.

Who may read it: ``myservice.metrics_access = token`` (the default, and production.ini's) leaves
it to the security policy: the view needs the permission ``metrics``, a token's scope.
``localhost`` (development.ini's) serves only clients whose address is a loopback one and
answers anyone else 403; behind a proxy on the same host every client looks local, so it fails
open there, and is not the default.
"""

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from pyramid.httpexceptions import HTTPForbidden
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.tweens import INGRESS
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from myservice.api.apidoc import Reply, operation
from myservice.data.db import is_conflict
from myservice.data.errors import BadSettings
from myservice.data.replicamonitor import DOWN, LAGGING, UP
from myservice.edge.problems import is_database_unavailable

ACCESS_SETTING = "myservice.metrics_access"
ACCESS_MODES = ("localhost", "token")
LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})

#: Label values a client cannot multiply: any other method is counted as ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

#: Seconds; a read takes about a millisecond, a bulk write up to seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

CHECKED_OUT = "myservice_db_connections_checked_out"
CHECKED_OUT_HELP = "Database connections checked out of the pool"


class Metrics:
    """The service's metrics, one set per app (the tests build several apps in one process)."""

    def __init__(self, engine, multiprocess_dir=None, replicas=None):
        self.multiprocess_dir = multiprocess_dir
        self.replicas = replicas
        self.registry = registry = CollectorRegistry()
        by_request = ("route", "method", "status")
        self.by_request = {}  # (route, method, status): their children of the two below
        self.requests = Counter(
            "myservice_requests", "Requests answered", by_request, registry=registry
        )
        self.latency = Histogram(
            "myservice_request_duration_seconds",
            "Seconds from a request's arrival to its final response, retries included",
            by_request,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "myservice_request_retries",
            "Attempts replayed by pyramid_retry",
            ["route"],
            registry=registry,
        )
        self.aborts = Counter(
            "myservice_transaction_aborts",
            "Attempts whose transaction was rolled back (an exception or a 4xx/5xx)",
            ["route"],
            registry=registry,
        )
        self.database_errors = Counter(
            "myservice_database_errors",
            "Database errors that reached the error views",
            ["kind"],
            registry=registry,
        )
        if multiprocess_dir is None:
            registry.register(PoolCollector(engine.pool))
            ProcessCollector(registry=registry)
            if replicas is not None:
                registry.register(ReplicaCollector(replicas))
        else:
            self.count_checkouts(engine)

    def count_checkouts(self, engine):
        """Several processes: each one adds its checkouts to a gauge that sums live processes."""
        checked_out = Gauge(
            CHECKED_OUT, CHECKED_OUT_HELP, multiprocess_mode="livesum", registry=self.registry
        )
        event.listen(engine, "checkout", lambda *args: checked_out.inc())
        event.listen(engine, "checkin", lambda *args: checked_out.dec())

    def observe(self, served):
        """A request's final response (``config.add_served_observer``)."""
        route = served.route or UNMATCHED
        method = served.method if served.method in METHODS else "other"
        key = (route, method, served.status)
        children = self.by_request.get(key)
        if children is None:  # the first request of its kind; ``labels()`` costs a lock
            children = self.by_request[key] = (
                self.requests.labels(*key),
                self.latency.labels(*key),
            )
        count, latency = children
        count.inc()
        latency.observe(served.seconds)
        if served.retries:
            self.retries.labels(route).inc(served.retries)

    def attempt_failed(self, request, exc):
        """An attempt ended in ``exc`` (or None) or a 4xx/5xx: pyramid_tm rolled it back."""
        route = request.matched_route
        self.aborts.labels(route.name if route is not None else UNMATCHED).inc()
        if isinstance(exc, SQLAlchemyError):
            self.database_errors.labels(error_kind(exc)).inc()

    def exposition_registry(self):
        """What a scrape shows: this process's metrics, or every process's (and this
        process's view of its replicas)."""
        if self.multiprocess_dir is None:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        if self.replicas is not None:
            registry.register(ReplicaCollector(self.replicas))
        return registry


def error_kind(exc):
    """The label of a database error: the distinctions ``myservice.edge.problems`` answers by."""
    if is_conflict(exc):
        return "conflict"
    if is_database_unavailable(exc):
        return "unavailable"
    return "other"


class PoolCollector:
    """One process: the pool's checked-out connections, read when scraped."""

    def __init__(self, pool):
        self.pool = pool

    def collect(self):
        checked_out = getattr(self.pool, "checkedout", None)  # QueuePool's; NullPool has none
        if checked_out is not None:
            yield GaugeMetricFamily(CHECKED_OUT, CHECKED_OUT_HELP, value=checked_out())


class ReplicaCollector:
    """The replicas as this process's monitor sees them, and where its reads went."""

    def __init__(self, replicas):
        self.replicas = replicas

    def collect(self):
        states = GaugeMetricFamily(
            "myservice_replica_state",
            "1 for each replica's current state",
            labels=["replica", "state"],
        )
        lags = GaugeMetricFamily(
            "myservice_replica_lag_seconds",
            "Seconds a replica is behind the primary",
            labels=["replica"],
        )
        for replica in self.replicas.replicas:
            for state in (UP, LAGGING, DOWN):
                states.add_metric([replica.name, state], 1 if replica.state == state else 0)
            if replica.lag_seconds is not None:
                lags.add_metric([replica.name], replica.lag_seconds)
        reads = CounterMetricFamily(
            "myservice_database_reads", "Reads served, by database", labels=["database"]
        )
        for database in self.replicas.databases:
            reads.add_metric([database.name], database.reads)
        fallbacks = CounterMetricFamily(
            "myservice_read_fallbacks",
            "Reads the primary served because no replica could, by reason",
            labels=["reason"],
        )
        for reason, count in self.replicas.fallbacks.items():
            fallbacks.add_metric([reason], count)
        yield from (states, lags, reads, fallbacks)


def attempt_tween_factory(handler, registry):
    metrics = registry["metrics"]

    def count_attempt(request):
        try:
            response = handler(request)
        except Exception as exc:
            metrics.attempt_failed(request, exc)
            raise
        if response.status_code >= 400:
            metrics.attempt_failed(request, request.exception)
        return response

    return count_attempt


@operation(
    "Prometheus metrics: requests, latency, retries, aborts, database errors, the pool",
    description="myservice.metrics_access = token (the default) asks for a token with the "
    "scope metrics; = localhost serves them to this host only, without a token.",
    responses={
        200: Reply("the text exposition format", schema={"type": "string"}, media="text/plain")
    },
    problems=(403,),
    database=False,
)
def metrics_view(request):
    localhost_only = request.registry.settings[ACCESS_SETTING] == "localhost"
    if localhost_only and request.remote_addr not in LOOPBACK:
        raise HTTPForbidden(f"metrics are served to this host only ({ACCESS_SETTING})")
    encode, content_type = choose_encoder(request.headers.get("Accept"))
    body = encode(request.registry["metrics"].exposition_registry())
    response = Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


def includeme(config):
    settings = config.get_settings()
    access = settings.setdefault(ACCESS_SETTING, "token")  # fail closed
    if access not in ACCESS_MODES:
        raise BadSettings(f"{ACCESS_SETTING} must be one of {', '.join(ACCESS_MODES)}")
    disable_created_metrics()  # no *_created series: a scrape shows what is counted, nothing else
    engine = config.registry["dbsession_factory"].kw["bind"]
    multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    metrics = Metrics(engine, multiprocess_dir, config.registry["replicas"])
    config.registry["metrics"] = metrics
    config.add_served_observer(metrics.observe)
    config.add_tween("myservice.api.metrics.attempt_tween_factory", under=INGRESS)
    config.add_route("metrics", "/metrics")
    permission = NO_PERMISSION_REQUIRED if access == "localhost" else "metrics"
    config.add_view(metrics_view, route_name="metrics", request_method="GET", permission=permission)

"""The ``paste.server_runner`` (``use = egg:myservice``): ``serve`` reads the options of
``[server:main]`` and serves in one process (``myservice.edge.server``) or in several
(``myservice.edge.processes``).
"""

from myservice.data.errors import BadSettings
from myservice.edge.processes import process_count, serve_processes
from myservice.edge.server import build_server, cannot_listen, stop_before_serving
from myservice.edge.slowclients import SlowClients
from myservice.edge.stopping import run

#: Seconds the requests in flight get to finish after SIGTERM, unless ``graceful_timeout`` says
#: otherwise (gunicorn's setting of the same name has the same meaning; its default is 30).
GRACEFUL_TIMEOUT = 20


def serve(app, global_conf, graceful_timeout=GRACEFUL_TIMEOUT, processes="1", **settings):
    """The ``paste.server_runner``: serve ``app`` until SIGTERM or SIGINT, then stop gracefully."""
    slow_clients = SlowClients.from_options(settings)
    try:
        count = process_count(processes)
    except BadSettings as error:
        stop_before_serving(str(error))
    if count > 1:
        serve_processes(app, count, float(graceful_timeout), settings, slow_clients)
        return
    try:
        server = build_server(app, **settings)
    except OSError as error:  # the address: taken, forbidden, unknown
        cannot_listen(settings, error)
    server.print_listen("Serving on http://{}:{}")
    run(server, float(graceful_timeout), slow_clients)

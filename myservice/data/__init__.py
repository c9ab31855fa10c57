"""The data layer: the engine, the sessions, the bounds on every wait, and the tables.

``db`` builds one engine per process and a session per request (``request.dbsession``, joined
to pyramid_tm) or per script (``session_scope``); ``replicas`` chooses the database a read is
served by when read replicas are configured (``replicamonitor`` watches them, on a thread per
process: ``processthread``); ``timeouts`` bounds each wait on PostgreSQL; ``models`` maps the
tables and holds the statements the views and tools share. Nothing here imports the floors
above (``edge``, ``api``, ``cli``).
"""

"""The command-line tools: ``myservice-import``, ``-purge``, ``-token``, ``-maintenance``, and
pshell's setup. Each opens its database with ``myservice.data.db.session_scope``, as a request
would, one transaction at a time."""

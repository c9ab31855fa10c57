"""The command-line tools: ``myservice-import``, ``-purge``, ``-token``, ``-maintenance``,
``-erase``, and pshell's setup. Each opens its database with
``myservice.data.scripts.session_scope``, as a request would, one transaction at a time."""

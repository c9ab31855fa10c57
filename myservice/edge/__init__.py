"""The HTTP edge: what every request passes through before and after its view.

The server (waitress, with its fixes), request ids, the access line, security headers and CORS,
the Consistency-Token (with read replicas), problem documents for every failure, the JSON body
guard, rendering, the bearer-token security policy and maintenance mode. It knows nothing of
users or groups; it imports only ``data``.
"""

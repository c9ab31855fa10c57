"""What the access line costs: GET one user served with it and without it (``bench/compare.py``).

Without it is production.ini with the ``myservice.access`` logger at WARN, the way an operator
turns the line off (docs/operations.md, Logs): a logger section of its own, named in
``[loggers]``. The request is still timed and its ``Served`` record still goes to the metrics;
what is left out is the line itself: its record, its JSON and its share of the writes.
"""

import re

from bench.compare import Comparison
from bench.variants import BenchError, section

#: The access line's logger, and the section that turns it off.
LOGGER = "myservice.access"
SILENCED = f"\n[logger_access]\nlevel = WARN\nhandlers =\nqualname = {LOGGER}\n"


def silence_access_log(text):
    """``text`` (an ini file's) with the access logger at WARN: ``access`` added to the keys of
    ``[loggers]``, and its ``[logger_access]`` section at the end."""
    start, end = section(text, "loggers")
    body, replaced = re.subn(r"(?m)^(keys[ \t]*=.*?)[ \t]*$", r"\1, access", text[start:end])
    if replaced != 1:
        raise BenchError("[loggers] has no single 'keys = ...' line to extend")
    return text[:start] + body + text[end:].rstrip("\n") + "\n" + SILENCED


#: GET one user with and without the access line; the issue's target: under 3%.
COMPARISON = Comparison(
    "myservice-noaccess", silence_access_log, "get", "the access line", max_cost=0.03
)

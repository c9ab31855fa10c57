"""wrk, the load generator, in its own process: installed when missing, driven by a Lua script.

The script makes the requests (a random seeded user, a POST of a user with a name unique to
the run, the thread and the request, or one fixed URL), each with ``Authorization: Bearer``
and the run's token (a baseline ignores it, and gets the same bytes), and its ``done`` hook
prints one line of JSON: requests, duration, p50/p99 latency and the error counts (socket
errors, and ``status``: answers that are not 2xx or 3xx).
"""

import json
import os
import shutil
import statistics
import subprocess
from collections import Counter
from dataclasses import dataclass

from tests.support.processes import SetupError as BenchError

THREADS = 4
CONNECTIONS = 16
MARK = "BENCH "

SCRIPT = """\
-- written by bench/wrk.py
local mode, users, prefix = "%(mode)s", %(users)d, "%(prefix)s"
local threads, next_tid = {}, 1
wrk.headers["Authorization"] = "Bearer %(token)s"

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 101 + tid * 7919)
  counter = 0
end

if mode == "get" then
  function request()
    return wrk.format("GET", "/users/" .. math.random(1, users))
  end
elseif mode == "post" then
  local headers = {["Content-Type"] = "application/json",
                   ["Authorization"] = wrk.headers["Authorization"]}
  function request()
    counter = counter + 1
    local name = prefix .. "t" .. tid .. "n" .. counter
    local body = '{"username":"' .. name .. '","email":"' .. name ..
      '@example.com","full_name":"Bench Post"}'
    return wrk.format("POST", "/users", headers, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"p50_us":%%.1f,"p99_us":%%.1f,' ..
    '"connect":%%d,"read":%%d,"write":%%d,"timeout":%%d,"status":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status))
end
"""


@dataclass
class Result:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: dict  # socket errors by kind, and "non-2xx/3xx"
    busy_cores: float = 0.0  # the machine's cores kept busy over the run, by anything

    @property
    def error_count(self):
        return sum(self.errors.values())


def mean_of(results):
    """One Result for the runs of one round on the servers of one side (started at different
    places, ``bench.served``): their mean req/s, latencies and busy cores; their requests,
    seconds and errors summed."""
    if len(results) == 1:
        return results[0]
    errors = Counter()
    for result in results:
        errors.update(result.errors)
    return Result(
        requests=sum(result.requests for result in results),
        seconds=sum(result.seconds for result in results),
        rps=statistics.mean(result.rps for result in results),
        p50_ms=statistics.mean(result.p50_ms for result in results),
        p99_ms=statistics.mean(result.p99_ms for result in results),
        errors=dict(errors),
        busy_cores=statistics.mean(result.busy_cores for result in results),
    )


def ensure_wrk(progress):
    """The path of wrk, installed with apt-get when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise BenchError("wrk is missing: install it (apt-get install -y wrk) and run again")
    progress("wrk is missing: apt-get update && apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"could not install wrk ({' '.join(command)}):\n{done.stderr[-800:]}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get installed wrk but it is not on PATH")
    return found


def write_script(path, mode, token, users=1, prefix="x"):
    """A Lua script: ``mode`` "get" (random user of 1..users), "post" (unique users) or "url",
    every request with the bearer ``token``."""
    values = {"mode": mode, "token": token, "users": users, "prefix": prefix, "mark": MARK}
    path.write_text(SCRIPT % values)
    return path


def run(wrk, script, url, seconds):
    """One wrk run of ``seconds`` against ``url`` with ``script``."""
    command = [wrk, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
               "-s", str(script), url]  # fmt: skip
    busy_before = busy_seconds()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
        busy_after = busy_seconds()
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"wrk did not finish: {' '.join(command)}") from error
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    data = json.loads(lines[-1][len(MARK) :])
    seconds = data["duration_us"] / 1e6
    errors = {kind: data[kind] for kind in ("connect", "read", "write", "timeout") if data[kind]}
    if data["status"]:
        errors["non-2xx/3xx"] = data["status"]
    return Result(
        requests=data["requests"],
        seconds=seconds,
        rps=data["requests"] / seconds if seconds else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
        busy_cores=(busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1] or 1),
    )


def busy_seconds():
    """(CPU seconds the machine's cores have spent busy since boot, by anyone; seconds since
    boot), from /proc: their difference over a run is how many cores it kept busy on average.
    (0, 1) where /proc/stat is missing."""
    try:
        with open("/proc/stat") as stat, open("/proc/uptime") as uptime:
            jiffies = [int(value) for value in stat.readline().split()[1:]]
            since_boot = float(uptime.read().split()[0])
    except OSError:
        return 0.0, 1.0
    idle = jiffies[3] + jiffies[4]  # idle and iowait
    return (sum(jiffies[:8]) - idle) / os.sysconf("SC_CLK_TCK"), since_boot

"""Served: wrk against every variant's real server, A B A B, then a long run for memory.

Every variant's server runs at once (idle ones cost nothing); for each round and each scenario
wrk drives the servers one after the other, in the order they started, so a busy neighbour on
the machine weighs on all of them alike. A server started earlier serves a few percent slower
than one started after it, whatever it serves (docs/performance.md, rounds six and seven), so
variants compared with each other can each have two servers, one started early and one late:
a round's figure for a variant is then the mean of its servers' (``wrk.mean_of``). The POST
names carry the run and the wrk run, so they never clash; every request carries the run's
token.
"""

import math
import secrets
import time
from dataclasses import dataclass, field

from bench import wrk
from bench.server import memory_kib

SCENARIOS = {
    "get": "GET one user",
    "post": "POST a user",
    "page": "GET a page of 50",
    "deep": "GET a deep page",
}


@dataclass
class Target:
    """One server as wrk sees it: its base URL and its deep-page path."""

    key: str  # the variant (or side) it serves: two servers may serve one
    base_url: str
    deep_path: str | None  # None: not driven on the deep page

    def serves(self, scenario):
        return scenario != "deep" or self.deep_path is not None


@dataclass
class Memory:
    requests: int = 0
    seconds: float = 0.0
    samples: list = field(default_factory=list)  # (requests so far, VmRSS KiB)
    peak_kib: int = 0
    errors: dict = field(default_factory=dict)

    @property
    def growth(self):
        start, end = self.samples[0][1], self.samples[-1][1]
        return (end - start) / start


class Driver:
    def __init__(self, wrk_path, directory, users, token):
        self.wrk_path = wrk_path
        self.run_id = secrets.token_hex(3)
        self.directory = directory
        self.token = token
        self.url_script = wrk.write_script(directory / "url.lua", "url", token)
        self.get_script = wrk.write_script(directory / "get.lua", "get", token, users=users)
        self.posts = 0  # POST scripts written: each names its users after its number

    def script(self, scenario):
        if scenario == "get":
            return self.get_script
        if scenario == "post":
            self.posts += 1
            path = self.directory / f"post-{self.posts}.lua"
            return wrk.write_script(path, "post", self.token, prefix=f"p{self.run_id}s{self.posts}")
        return self.url_script

    def url(self, target, scenario):
        path = target.deep_path if scenario == "deep" else "/users?limit=50"
        return target.base_url + ("/" if scenario in ("get", "post") else path)

    def once(self, target, scenario, seconds):
        return wrk.run(self.wrk_path, self.script(scenario), self.url(target, scenario), seconds)

    def rounds(self, targets, rounds, seconds, progress, scenarios=SCENARIOS, what=""):
        """{key: {scenario: [Result per round]}} after one short warm-up of each target; a
        round's Result for a key served by several targets is the mean of theirs."""
        results = {target.key: {scenario: [] for scenario in scenarios} for target in targets}
        for number in range(rounds + 1):
            progress(f"{what}round {number}/{rounds}" if number else f"{what}warm-up round")
            for scenario in scenarios:
                runs = {}
                for target in filter(lambda target: target.serves(scenario), targets):
                    result = self.once(target, scenario, seconds if number else 1)
                    runs.setdefault(target.key, []).append(result)
                if number:
                    for key, same in runs.items():
                        results[key][scenario].append(wrk.mean_of(same))
        return results

    def memory(self, target, pid, requests, rate, max_seconds, progress):
        """GET one user until ``requests`` were served (or ``max_seconds``), RSS in between."""
        memory = Memory(samples=[(0, memory_kib(pid).get("VmRSS", 0))])
        started = time.monotonic()
        while memory.requests < requests and time.monotonic() - started < max_seconds:
            needed = (requests - memory.requests) * 1.05 / max(rate, 1.0)
            remaining = max_seconds - (time.monotonic() - started)
            seconds = max(2, math.ceil(min(30, needed, remaining)))
            progress(f"memory run: {memory.requests:,}/{requests:,} requests, next {seconds}s")
            result = wrk.run(self.wrk_path, self.get_script, target.base_url + "/", seconds)
            memory.requests += result.requests
            memory.seconds += result.seconds
            for kind, count in result.errors.items():
                memory.errors[kind] = memory.errors.get(kind, 0) + count
            rate = result.rps
            memory.samples.append((memory.requests, memory_kib(pid).get("VmRSS", 0)))
        memory.peak_kib = memory_kib(pid).get("VmHWM", 0)
        return memory

"""What the scale benchmarks measure, and how they run one scale per process.

A step is timed in wall seconds and CPU seconds (this process and the children it waited
for: dbt, the GPU jobs), and its peak memory is the largest resident set size of this process
and its children, sampled while the step runs. Each result is one JSON line on stdout behind
``RESULT_PREFIX``, so the parent process that runs every scale in a fresh child can collect
and print them as they come.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import psutil

RESULT_PREFIX = "RESULT "


def scale_parser(doc: str, default_users: str, default_days: int) -> argparse.ArgumentParser:
    """The flags every scale benchmark takes: the scales, the marketplace's shape, the seed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default=default_users, help="comma-separated user counts (default: %(default)s)")
    parser.add_argument("--items-per-user", type=float, default=2 / 3, help="catalogue size per user (default: the generator's 2/3)")
    parser.add_argument("--days", type=int, default=default_days, help="days of events generated (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, help=argparse.SUPPRESS)  # internal: run one scale in this process
    return parser


def marketplace_spec(users: int, args: argparse.Namespace):
    from datetime import date

    from synthetic_marketplace.generator import MarketplaceSpec

    items = max(10, round(users * args.items_per_user))
    return MarketplaceSpec(users=users, items=items, days=args.days, end_date=date(2026, 6, 30), seed=args.seed)


def cpu_seconds(children: bool = True) -> float:
    """CPU time of this process (all threads) and, by default, of its finished children."""
    times = os.times()
    own = times.user + times.system
    return own + times.children_user + times.children_system if children else own


class PeakMemory:
    """The largest RSS of this process plus its live children while the block runs (MB)."""

    def __init__(self, every_seconds: float = 0.2):
        self.every, self.peak_mb = every_seconds, 0.0
        self._done = threading.Event()
        self._process = psutil.Process()

    def _sample(self) -> None:
        while not self._done.wait(self.every):
            total = self._process.memory_info().rss
            for child in self._process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)

    def __enter__(self) -> PeakMemory:
        self.peak_mb = self._process.memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def emit(**row) -> None:
    print(RESULT_PREFIX + json.dumps(row, default=str), flush=True)


def run_scale(script: str, argv: list[str], scale: int, print_row: Callable[[dict], None]) -> list[dict]:
    """``script --scale N`` in a fresh process, so peak memory and caches do not carry over between scales."""
    command = [sys.executable, script, *argv, "--scale", str(scale)]
    rows = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}) as process:
        for line in process.stdout:
            if line.startswith(RESULT_PREFIX):
                row = json.loads(line[len(RESULT_PREFIX) :])
                rows.append(row)
                print_row(row)
    if process.returncode:
        print(f"  (scale {scale:,} failed with exit code {process.returncode})", flush=True)
    return rows


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def timed(action: Callable[[], object]) -> tuple[object, float, float, float]:
    """(what ``action`` returned, wall s, CPU s, peak MB)."""
    with PeakMemory() as memory:
        started, cpu_started = time.perf_counter(), cpu_seconds()
        value = action()
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    return value, seconds, cpu, memory.peak_mb

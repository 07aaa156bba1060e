"""What a candidate step returns, whichever engine ran it: rows written, seconds per phase, statistics.

The assets turn it into materialization metadata and the benchmarks print it, so both see
the same numbers for the same step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from recsys_assets.candidates.tables import TableSpec


@dataclass
class StepReport:
    table: TableSpec
    rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds[phase] = round(time.perf_counter() - started, 3)

"""Summary statistics and timing helpers shared by every benchmark.

Every figure the harness reports is a ``Figure``: a name, a unit and a ``Summary`` of repeated
measurements taken after warm-up (median, nearest-rank p95, interquartile range as the spread,
min and max), or a single value where a measurement is too expensive to repeat (``n`` says so).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from benchmarks.soak import percentile


@dataclass(frozen=True)
class Summary:
    """Order statistics of repeated measurements (same unit as the inputs)."""

    n: int
    median: float
    p95: float
    p25: float
    p75: float
    min: float
    max: float
    mean: float

    @property
    def iqr(self) -> float:
        """Spread: the interquartile range p75 - p25."""
        return self.p75 - self.p25


def summarise(values: Sequence[float]) -> Summary:
    """Median, nearest-rank p25/p75/p95, min, max and mean of ``values`` (at least one)."""
    values = [float(v) for v in values]
    if not values or any(math.isnan(v) for v in values):
        raise ValueError("summarise needs at least one value and no NaN")
    return Summary(len(values), median(values), *(percentile(values, q) for q in (95, 25, 75)), min(values),
                   max(values), sum(values) / len(values))


@dataclass
class Figure:
    """One reported figure. ``summary`` is None only when the figure could not be measured,
    in which case ``note`` says why."""

    name: str
    unit: str
    summary: Summary | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "unit": self.unit, "note": self.note}
        if self.summary is not None:
            out.update({k: _round(v) for k, v in asdict(self.summary).items()})
            out["iqr"] = _round(self.summary.iqr)
        if self.extra:
            out["extra"] = {k: _round(v) if isinstance(v, float) else v for k, v in self.extra.items()}
        return out


def _round(value: float) -> float:
    """Four significant digits: more would only report noise."""
    if isinstance(value, int) or value == 0 or not math.isfinite(value):
        return value
    return round(value, max(0, 3 - math.floor(math.log10(abs(value)))))


def figure(name: str, values: Sequence[float], unit: str, note: str = "", **extra: Any) -> Figure:
    """A ``Figure`` from raw measurements (an empty list gives an unmeasured figure)."""
    return Figure(name, unit, summarise(values) if len(values) else None, note, dict(extra))


def time_calls(fn: Callable[[int], Any], repeats: int, warmup: int = 1, scale: float = 1e3) -> list[float]:
    """Wall time of ``fn(i)`` for i in range(repeats), after ``warmup`` untimed calls with
    negative i; returned in milliseconds by default (``scale`` multiplies seconds)."""
    for i in range(warmup):
        fn(-1 - i)
    out = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - start) * scale)
    return out


def recall_at_k(found: Sequence[Sequence[int]], truth: Sequence[Sequence[int]], k: int) -> float:
    """Mean over queries of |found[:k] & truth[:k]| / k (Recall@k against exact search)."""
    if len(found) != len(truth) or not len(truth):
        raise ValueError("recall_at_k needs one found and one true list per query")
    return sum(len({int(x) for x in list(got)[:k] if int(x) >= 0} & {int(x) for x in list(want)[:k]}) / k
               for got, want in zip(found, truth)) / len(truth)


def target(label: str, *, median_max: float | None = None, p95_max: float | None = None,
           **minimums: float) -> dict[str, Any]:
    """A machine-checkable target for a figure: bounds on its median and p95, and minimums on
    named extras (e.g. ``recall10=0.95``); ``label`` is how BENCHMARKS.md states it."""
    out = {"label": label, "median_max": median_max, "p95_max": p95_max, "minimums": dict(minimums)}
    return {k: v for k, v in out.items() if v is not None and v != {}}


def meets(fig: dict[str, Any]) -> bool | None:
    """Whether a figure's JSON (``Figure.to_json``) meets its target; None without target or value."""
    extra = fig.get("extra") or {}
    goal = extra.get("target")
    if not goal or "median" not in fig:
        return None
    return bool(fig["median"] <= goal.get("median_max", math.inf) and fig["p95"] <= goal.get("p95_max", math.inf)
                and all(extra.get(k) is not None and extra[k] >= low for k, low in goal.get("minimums", {}).items()))

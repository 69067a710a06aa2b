"""Summary statistics and timing helpers shared by every benchmark.

Every figure the harness reports is a dict (its JSON): a name, a unit and a summary of repeated
measurements taken after warm-up (median, nearest-rank p95, interquartile range as the spread,
min and max), or a single value where a measurement is too expensive to repeat (``n`` says so).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from statistics import median
from typing import Any

from benchmarks.soak import percentile

Figure = dict[str, Any]


def summarise(values: Sequence[float]) -> dict[str, float]:
    """n, median, nearest-rank p95/p25/p75, min, max, mean and IQR (p75 - p25) of ``values``."""
    values = [float(v) for v in values]
    if not values or any(math.isnan(v) for v in values):
        raise ValueError("summarise needs at least one value and no NaN")
    p95, p25, p75 = (percentile(values, q) for q in (95, 25, 75))
    return {"n": len(values), "median": median(values), "p95": p95, "p25": p25, "p75": p75, "min": min(values),
            "max": max(values), "mean": sum(values) / len(values), "iqr": p75 - p25}


def _round(value: float) -> float:
    """Four significant digits: more would only report noise."""
    whole = isinstance(value, int) or value == 0 or not math.isfinite(value)
    return value if whole else round(value, max(0, 3 - math.floor(math.log10(abs(value)))))


def figure(name: str, values: Sequence[float], unit: str, note: str = "", **extra: Any) -> Figure:
    """A figure from raw measurements; an empty list gives one without a summary (``note`` says why)."""
    out: Figure = {"name": name, "unit": unit, "note": note}
    if len(values):
        out.update({k: _round(v) for k, v in summarise(values).items()})
    if extra:
        out["extra"] = {k: _round(v) if isinstance(v, float) else v for k, v in extra.items()}
    return out


def time_each(fn: Callable[[Any], Any], inputs: Sequence[Any], scale: float = 1e3,
              warmup: bool = True) -> tuple[list[float], list[Any]]:
    """``fn`` on each input, timed, after one untimed call on the first input (unless not ``warmup``):
    (times, results); times in milliseconds by default (``scale`` multiplies seconds)."""
    if warmup:
        fn(inputs[0])
    times, results = [], []
    for x in inputs:
        start = time.perf_counter()
        results.append(fn(x))
        times.append((time.perf_counter() - start) * scale)
    return times, results


def time_calls(fn: Callable[[int], Any], repeats: int, warmup: int = 1, scale: float = 1e3) -> list[float]:
    """Wall time of ``fn(i)`` for i in range(repeats), after ``warmup`` untimed calls with negative i."""
    for i in range(warmup):
        fn(-1 - i)
    return time_each(fn, range(repeats), scale, warmup=False)[0]


def target(label: str, *, median_max: float | None = None, p95_max: float | None = None,
           **minimums: float) -> dict[str, Any]:
    """A machine-checkable target for a figure: bounds on its median and p95, and minimums on
    named extras (e.g. ``recall10=0.95``); ``label`` is how BENCHMARKS.md states it."""
    out = {"label": label, "median_max": median_max, "p95_max": p95_max, "minimums": dict(minimums)}
    return {k: v for k, v in out.items() if v is not None and v != {}}


def meets(fig: Figure) -> bool | None:
    """Whether a figure meets its target; None without target or value."""
    extra = fig.get("extra") or {}
    goal = extra.get("target")
    if not goal or "median" not in fig:
        return None
    return bool(fig["median"] <= goal.get("median_max", math.inf) and fig["p95"] <= goal.get("p95_max", math.inf)
                and all(extra.get(k) is not None and extra[k] >= low for k, low in goal.get("minimums", {}).items()))

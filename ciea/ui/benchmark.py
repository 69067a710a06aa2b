"""Evaluation reports as table rows for the app, with per-kind query counts and bootstrap
intervals over queries on MRR@10."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ciea.evaluate import METRICS as METRIC_COLUMNS

CI_HEADER = "MRR@10 95% CI"
HEADERS = ["split", "retriever", "queries"] + list(METRIC_COLUMNS) + [CI_HEADER]
#: Bootstrap resamples for the interval over queries (BCa needs a few thousand to settle).
BOOTSTRAP_RESAMPLES = 2000


def mrr_interval(reciprocal_ranks: Sequence[float], seed: int = 0) -> tuple[float, float] | None:
    """95% bootstrap interval (BCa, resampling queries) of the mean reciprocal rank, or None
    for fewer than two queries; a constant sample (e.g. all 1.0) gives a zero-width interval."""
    values = np.asarray(reciprocal_ranks, dtype=np.float64)
    if values.size < 2:
        return None
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    from scipy.stats import bootstrap

    result = bootstrap((values,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=0.95,
                       method="BCa", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def benchmark_rows(reports: Mapping[str, dict], counts: Mapping[str, int] | None = None,
                   intervals: Mapping[tuple[str, str], tuple[float, float] | None] | None = None) -> list[list]:
    """One row per split, retriever and query kind, from saved ``eval`` reports. ``counts``
    gives the number of judged queries per kind ("all" for the total; the report's own count
    otherwise); ``intervals`` the MRR@10 interval per (retriever, kind), where computed."""
    rows = []
    for split, report in reports.items():
        for retriever, by_kind in report.get("metrics", {}).items():
            for kind, metrics in by_kind.items():
                label = retriever if kind == "all" else f"{retriever} · {kind}"
                n = (counts or {}).get(kind, report.get("queries", "") if kind == "all" else "")
                ci = (intervals or {}).get((retriever, kind))
                rows.append([split, label, n] + [metrics.get(m, "") for m in METRIC_COLUMNS]
                            + [f"{ci[0]:.3f} to {ci[1]:.3f}" if ci else ""])
    return rows

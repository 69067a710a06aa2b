"""Evaluation reports as table rows for the app."""

from __future__ import annotations

from ciea.evaluate import METRICS as METRIC_COLUMNS

HEADERS = ["split", "retriever", "queries"] + list(METRIC_COLUMNS)


def benchmark_rows(reports: dict[str, dict]) -> list[list]:
    """One row per split, retriever and query kind, from saved ``eval`` reports."""
    rows = []
    for split, report in reports.items():
        for retriever, by_kind in report.get("metrics", {}).items():
            for kind, metrics in by_kind.items():
                label = retriever if kind == "all" else f"{retriever} · {kind}"
                rows.append([split, label, report.get("queries", "")]
                            + [metrics.get(m, "") for m in METRIC_COLUMNS])
    return rows

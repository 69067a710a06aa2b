"""The benchmark harness's own logic: statistics, targets, synthetic data and the BENCHMARKS.md
rendering. No timing is asserted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import report
from benchmarks.bench_scale import clustered_vectors, numpy_search
from benchmarks.run import wait_for_quiet
from benchmarks.stats import (
    figure,
    median,
    meets,
    summarise,
    target,
    time_calls,
    time_each,
)


def test_summary_of_one_to_ten_by_hand():
    s = summarise([7, 3, 10, 1, 5, 2, 9, 4, 8, 6])
    # nearest rank: p25 = 3rd of 10, p75 = 8th, p95 = ceil(9.5) = 10th
    assert [s[k] for k in ("n", "median", "p25", "p75", "p95", "min", "max")] == [10, 5.5, 3, 8, 10, 1, 10]
    assert s["mean"] == 5.5 and s["iqr"] == 5


def test_median_odd_and_single_and_refusals():
    assert median([3, 1, 2]) == 2
    single = summarise([4.0])
    assert single["median"] == single["p95"] == single["min"] == single["max"] == 4.0 and single["iqr"] == 0
    with pytest.raises(ValueError):
        summarise([])
    with pytest.raises(ValueError):
        summarise([1.0, math.nan])


def test_time_calls_runs_warmups_untimed_then_each_index_once():
    calls = []
    times = time_calls(calls.append, repeats=3, warmup=2)
    assert calls == [-1, -2, 0, 1, 2]
    assert len(times) == 3 and all(t >= 0 for t in times)


def test_time_each_warms_up_on_the_first_input_then_times_each_and_keeps_results():
    calls = []
    times, results = time_each(lambda x: calls.append(x) or x * 2, [3, 4, 5])
    assert calls == [3, 3, 4, 5] and results == [6, 8, 10]
    assert len(times) == 3 and all(t >= 0 for t in times)
    calls.clear()
    assert time_each(calls.append, [1, 2], warmup=False)[1] == [None, None] and calls == [1, 2]


def test_figure_json_and_target_verdicts():
    fast = figure("search", [100, 120, 140, 160, 600], "ms", target=target("p50 <= 250, p95 <= 500",
                                                                            median_max=250, p95_max=500))
    assert fast["median"] == 140 and fast["p95"] == 600 and fast["iqr"] == 40
    assert meets(fast) is False  # median fine, p95 over
    ok = figure("x", [1.0, 2.0], "ms", recall10=0.96, target=target("t", median_max=5, recall10=0.95))
    assert meets(ok) is True
    low = figure("x", [1.0, 2.0], "ms", recall10=0.9, target=target("t", median_max=5, recall10=0.95))
    assert meets(low) is False
    assert meets(figure("no target", [1.0], "ms")) is None
    assert "median" not in figure("unmeasured", [], "ms")


def test_fmt_and_table_escape_and_round():
    assert report.fmt(None) == "-" and report.fmt(True) == "yes" and report.fmt(float("nan")) == "-"
    assert report.fmt(1234.4) == "1,234"
    assert report.fmt(12.345) == "12.3" and report.fmt(0.012345) == "0.0123"
    md = report.table(["a", "b"], [["x|y", 1.5]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1.50 |"]


def results_fixture(load: float) -> dict:
    slow = figure("/search scenes, 4 retrievers [as shipped]: cold (distinct queries)", [300.0, 320.0, 900.0], "ms",
                  target=target("/search p50 <= 250 ms, p95 <= 500 ms", median_max=250, p95_max=500))
    fast = figure("/search stamps, 4 retrievers [as shipped]: cold (distinct queries)", [100.0, 150.0], "ms",
                  target=target("/search p50 <= 250 ms, p95 <= 500 ms", median_max=250, p95_max=500))
    rss = figure("peak RSS [as shipped]", [1100.0], "MB", target=target("app peak RSS <= 3 GiB", median_max=3072))
    return {
        "meta": {"date": "2026-01-01T00:00:00+00:00", "mode": "full", "command": "python -m benchmarks.run",
                 "machine": {"cpu": "Test CPU", "cores": 2, "memory_gb": 8.0}, "versions": {"python": "3.11"},
                 "loadavg_start": load, "loadavg_end": 1.0, "wall_s": 10.0, "sections": ["app", "scale"]},
        "sections": {
            "app": {"title": "The app", "figures": [slow, fast, rss], "retrievers": {"stamps": ["text-dense"]}},
            "scale": {"title": "Scale", "figures": [], "columns": ["data", "n"], "table": [["clustered", "1e6"]]},
        },
    }


def test_render_has_header_sections_and_verdicts():
    md = report.render(results_fixture(load=1.2))
    assert md.startswith("# Benchmarks\n")
    assert "Test CPU, 2 cores" in md and "The machine was busy" not in md
    assert "## The app" in md and "Retrievers measured (ready at run time): stamps: text-dense." in md
    assert "| /search scenes, 4 retrievers [as shipped]: cold (distinct queries) | 3 | 320 | 900 |" in md
    assert "| clustered | 1e6 |" in md
    summary = md.split("## Closing note: targets")[1].split("<details>")[0]
    # one row per target, with the worst median and p95 of its figures
    assert "| /search p50 <= 250 ms, p95 <= 500 ms | 2 | p50 320 ms, p95 900 ms | MISSED |" in summary
    assert "| app peak RSS <= 3 GiB | 1 | p50 1,100 MB | met |" in summary
    assert summary.index("/search p50") < summary.index("app peak RSS")  # targets in order
    details = md.split("<details>")[1]
    assert details.count("MISSED") == 1 and details.count("| met |") == 2
    assert "| /search p50 <= 250 ms, p95 <= 500 ms | /search stamps, 4 retrievers [as shipped]: cold (distinct " \
           "queries) | p50 125 ms, p95 150 ms | met |" in details


def test_render_warns_prominently_on_a_busy_machine():
    md = report.render(results_fixture(load=6.5))
    assert "> **The machine was busy" in md and "6.50 at start" in md


def test_wait_for_quiet_polls_until_quiet_or_deadline():
    readings = iter([5.0, 4.0, 2.0, 9.0])
    slept = []
    assert wait_for_quiet(2.5, 600, poll_s=30, read=lambda: next(readings), sleep=slept.append) == 60
    assert slept == [30, 30]
    assert wait_for_quiet(2.5, 90, poll_s=30, read=lambda: 9.0, sleep=lambda s: None) == 90


def test_clustered_vectors_are_unit_rows_seeded_and_clustered():
    a = clustered_vectors(3000, 10, d=32, seed=1)
    assert a.shape == (3000, 32) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, clustered_vectors(3000, 10, d=32, seed=1))
    # clustered: a point's best neighbour is far closer than a random point (random unit vectors in
    # 32-d have cosine about 0 +- 0.18)
    sims = a[:50] @ a.T
    np.fill_diagonal(sims[:, :50], -1)
    assert np.median(sims.max(axis=1)) > 0.5


def test_numpy_search_returns_top_k_by_dot_product():
    data = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0]], dtype=np.float32)
    assert numpy_search(data, np.array([1.0, 0.0], np.float32), k=2).tolist() == [0, 2]


def test_sliced_w2_of_a_translated_cloud_is_the_projected_shift():
    """For Y = X + c every projection moves by theta.c, so SW2 = sqrt(mean_theta (theta.c)^2)."""
    import ot

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8))
    c = np.arange(8, dtype=np.float64) / 10
    theta = ot.sliced.get_random_projections(8, 64, 3)
    expected = math.sqrt(np.mean((c @ theta) ** 2))
    from ciea.geometry import sliced_wasserstein

    assert sliced_wasserstein(x, x + c, n_projections=64, seed=3) == pytest.approx(expected, rel=1e-9)


def test_soak_summary_lists_latency_per_kind():
    soak = {"clients": 16, "requests": 10, "errors": 0, "targets": {"zero errors": True},
            "latency_by_kind": {"text": {"n": 8, "p50_s": 0.5, "p95_s": 0.9, "max_s": 1.0},
                                "image": {"n": 2, "p50_s": 1.5, "p95_s": 2.5, "max_s": 2.5}}}
    md = "\n".join(report.soak_markdown(soak))
    assert "| image | 2 | 1.50 | 2.50 | 2.50 |" in md and "zero errors: met" in md
    assert "Latency by kind" not in "\n".join(report.soak_markdown({"requests": 1}))


def test_a_rewritten_file_keeps_the_profile_and_the_historical_studies(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    kept = lambda heading: report.kept(path, heading)  # noqa: E731
    assert kept(report.HISTORICAL_HEADING) == "" and kept(report.PREFACE_HEADING) == ""  # no file yet
    history = f"{report.HISTORICAL_HEADING}\n\n### Geometry\n\n| exact W2 | 0.083 s |\n"
    profile = f"{report.PREFACE_HEADING}\n\n1. **Threads.** One per process.\n"
    path.write_text(f"# Benchmarks\n\n{profile}\n## Query\n\nold generated part\n\n{history}", encoding="utf-8")
    assert kept(report.HISTORICAL_HEADING) == history and kept(report.PREFACE_HEADING) == profile + "\n"
    md = report.render(results_fixture(load=1.2), kept(report.HISTORICAL_HEADING), kept(report.PREFACE_HEADING))
    assert md.endswith(history) and "old generated part" not in md and md.count(report.HISTORICAL_HEADING) == 1
    assert md.index(profile) < md.index("## The app") and md.count(report.PREFACE_HEADING) == 1


def test_the_shipped_file_marks_every_removed_study_historical():
    from benchmarks.run import BENCHMARKS_MD

    history = report.kept(BENCHMARKS_MD, report.HISTORICAL_HEADING)
    for study in ("Query path at 2 threads", "The text tower run once per retriever",
                  "The app with every core, and with one core busy", "Before / after of that run",
                  "Thread settings under CPU contention", "Build throughput and index rebuild", "Geometry",
                  "FAISS index types at scale"):
        assert f"### {study}\n\n*Historical: measured on" in history
    current = BENCHMARKS_MD.read_text(encoding="utf-8").split(report.HISTORICAL_HEADING)[0]
    rows = [line for line in current.splitlines() if line.startswith("| ")]
    removed = ("[2 threads]", "[every core", "1 core busy]", "text encoded per retriever")  # what the harness lost
    assert len(rows) > 50 and [row for row in rows if any(tag in row for tag in removed)] == []

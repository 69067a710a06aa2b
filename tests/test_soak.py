"""A short soak in the suite: 4 gradio_client sessions x 25 mixed queries, zero errors.

The long soak (16 clients, minutes) runs in ``python -m benchmarks.run --only app`` (alone:
``python -m benchmarks.soak``); its figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.soak import (
    ODD_INPUTS,
    Case,
    is_loopback,
    judge,
    judge_exception,
    percentile,
    rss_mb,
    run_soak,
)


def test_short_soak_has_zero_errors(app_url):
    report = run_soak(app_url, clients=4, requests_per_client=25, seed=1)
    assert report.requests == 100
    assert report.errors == 0, report.error_samples
    assert report.server_answers_after
    assert report.by_kind.get("text", 0) > 0 and report.by_kind.get("refusal", 0) + report.by_kind.get("odd", 0) > 0
    assert report.p95_s is not None and report.p50_s <= report.p95_s <= report.max_s


@pytest.mark.parametrize("url, ok", [
    ("http://127.0.0.1:7860/", True), ("http://localhost:1/", True), ("http://[::1]:7860/", True),
    ("http://127.8.9.10/", True), ("http://10.0.0.1:7860/", False), ("https://huggingface.co/", False),
    ("http://0.0.0.0:7860/", False), ("not a url", False),
])
def test_only_loopback_urls_are_load_tested(url, ok):
    assert is_loopback(url) is ok


def test_run_soak_refuses_other_hosts_before_connecting():
    with pytest.raises(ValueError, match="only loopback"):
        run_soak("http://192.0.2.1:7860/", clients=1, requests_per_client=1)
    with pytest.raises(ValueError, match="exactly one"):
        run_soak("http://127.0.0.1:9/", clients=1)
    with pytest.raises(ValueError, match="clients must be"):
        run_soak("http://127.0.0.1:9/", clients=1000, requests_per_client=1)


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 50) == 10.0 and percentile(values, 95) == 19.0 and percentile(values, 100) == 20.0
    assert percentile([3.0], 95) == 3.0 and percentile([], 50) is None


def test_judging_answers():
    normal, refusal = Case("text", "/search", (), label="a frog"), Case("odd", "/search", (), True, "empty")
    results = {"results": {"text-dense": [{"rank": 1}]}, "notices": []}
    assert judge(normal, ("<html>", results)) is None
    assert "refused" in judge(normal, ("<html>", {"error": "Type a query"}))
    assert "no results" in judge(normal, ("<html>", {"results": {}, "notices": ["x unavailable"]}))
    assert "no JSON" in judge(normal, "<html>")
    assert judge(refusal, ("<html>", {"error": "Type a query: the text was empty."})) is None
    assert "should be refused" in judge(refusal, ("<html>", results))
    assert {label for *_, label in ODD_INPUTS} >= {"empty", "markup", "emoji", "right-to-left", "k = 0"}


def test_refusals_by_gradio_validation_count_as_refusals():
    from gradio_client.exceptions import AppError

    refusal, normal = Case("odd", "/search", (), True, "k too large"), Case("text", "/search", (), label="a frog")
    assert judge_exception(refusal, AppError("Value 1000 is greater than maximum value 100.")) is None
    assert "AppError" in judge_exception(normal, AppError("Value 1000 is greater than maximum value 100."))
    assert "ConnectionError" in judge_exception(refusal, ConnectionError("refused"))


def test_resident_memory_is_read_from_the_process_and_its_children():
    """A child that holds 200 MB of touched memory reads as about 200 MB more than an idle one."""
    hold = "import sys, time; x = b'x' * int(sys.argv[1]) * 2**20; print('ready', flush=True); time.sleep(60)"
    procs = [subprocess.Popen([sys.executable, "-c", hold, str(mb)], stdout=subprocess.PIPE) for mb in (0, 200)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == b"ready"
        idle, busy = (rss_mb(p.pid) for p in procs)
        assert 180 < busy - idle < 230
        assert rss_mb(os.getpid()) >= busy + idle  # children are counted with their parent
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert rss_mb(procs[0].pid) is None  # gone

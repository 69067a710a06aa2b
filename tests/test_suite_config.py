"""The suite's own configuration: the slow marker, what it covers, and what CI adds."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def collected(marker: str, files: list[str]) -> set[str]:
    """Node ids (without parameters) that ``-m marker`` selects in ``files``."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "-m", marker, *files],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTEST_ADDOPTS": ""})
    assert out.returncode == 0, out.stdout + out.stderr
    return {line.split("[")[0] for line in out.stdout.splitlines() if "::" in line}


def test_slow_marker_is_registered_and_strict():
    config = configparser.ConfigParser()
    config.read(ROOT / "pytest.ini")
    assert "slow:" in config["pytest"]["markers"]
    assert "--strict-markers" in config["pytest"]["addopts"]


def test_app_browser_soak_pipeline_and_cli_eval_tests_are_slow():
    slow = ("tests/test_app.py::test_search_endpoint_returns_results_side_by_side",
            "tests/test_app_bad_input.py::test_text_and_parameters_through_gradio_client",
            "tests/test_app_bad_input.py::test_markup_in_captions_and_queries_is_never_live",
            "tests/test_soak.py::test_short_soak_has_zero_errors",
            "tests/test_service.py::test_open_clip_pipeline_end_to_end",
            "tests/test_cli.py::test_eval_prints_metrics_per_retriever_and_kind_for_scenes")
    whole = ["tests/test_browser.py", "tests/test_pipeline.py"]
    files = whole + sorted({name.split("::")[0] for name in slow})  # collecting only these keeps it quick
    quick = collected("not slow", files)
    assert not {name for name in quick if name.startswith(tuple(whole))}
    for name in slow:
        assert name not in quick
    # unit tests in the same modules stay in the quick loop
    assert "tests/test_app.py::test_captions_and_ids_are_escaped_in_result_cards" in quick
    assert "tests/test_soak.py::test_nearest_rank_percentiles" in quick


def test_ci_runs_the_readme_command_with_durations():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "--durations=15" in ci and "test-command" in ci
    assert "<!-- test-command: python -m pytest -q tests -->" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_numba_cache_outlives_the_checkout():
    cache = Path(os.environ["NUMBA_CACHE_DIR"])  # set by conftest before numba is imported
    assert not cache.resolve().is_relative_to(ROOT.resolve()), "a fresh CI clone would lose it"
    import numba

    assert Path(numba.config.CACHE_DIR) == cache

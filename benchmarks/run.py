"""The benchmark harness's one entry point.

    python -m benchmarks.run --quick          # every figure, small repeats, under 5 minutes; prints JSON
    python -m benchmarks.run                  # the full run: waits for a quiet machine, rewrites BENCHMARKS.md
    python -m benchmarks.run --only query,scale --quick
    taskset -c 0,1 python -m benchmarks.run --only app --space   # cold start of the Space upload

Sections: query (in-process query path per retriever, open_clip peer), app (cold start, peak RSS,
/search end to end, a short soak), scale (synthetic corpora up to 1e6: exact Flat and numpy),
browser (headless Chromium). Finished studies and the profile summary are prose in BENCHMARKS.md,
kept when it is rewritten. JSON goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import report

HERE = Path(__file__).resolve().parent
BENCHMARKS_MD = HERE / "BENCHMARKS.md"
LOAD_POLL_S = 30
LOAD_WAIT_MAX_S = 25 * 60
log = logging.getLogger("benchmarks")


def loadavg() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def wait_for_quiet(limit: float, max_wait_s: float, poll_s: float = LOAD_POLL_S,
                   read: Callable[[], float | None] = loadavg, sleep: Callable[[float], None] = time.sleep) -> float:
    """Poll the load average until it is below ``limit`` or ``max_wait_s`` has passed; seconds waited."""
    waited = 0.0
    while True:
        value = read()
        if value is None or value < limit or waited >= max_wait_s:
            return waited
        log.info("load average %.2f >= %.2f: waiting (%.0f s so far, at most %.0f s)", value, limit, waited,
                 max_wait_s)
        sleep(poll_s)
        waited += poll_s


def _proc_field(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of a /proc file, or None."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path(path).read_text().splitlines()
                    if line.startswith(key))
    except (OSError, StopIteration):
        return None


def machine() -> dict[str, Any]:
    memory_kb = _proc_field("/proc/meminfo", "MemTotal")
    gpu = None
    with contextlib.suppress(Exception):  # the GPU line is informational
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": _proc_field("/proc/cpuinfo", "model name") or "?", "cores": os.cpu_count(),
            "memory_gb": round(int(memory_kb.split()[0]) / 2**20, 1) if memory_kb else None,
            "platform": platform.platform(), "gpu": gpu}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "faiss-cpu", "numpy", "transformers", "open_clip_torch", "gradio", "gradio_client",
                 "umap-learn", "POT"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def git_state() -> str:
    """The checked-out commit and whether tracked files have uncommitted changes (read-only git)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty= with uncommitted changes"], cwd=HERE,
                              capture_output=True, text=True, timeout=30, check=False).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def run_section(name: str, quick: bool, space: bool = False) -> dict[str, Any]:
    """One section with its mode's configuration; ``benchmarks.bench_<name>`` is imported only
    when run, so a section's heavy imports cost nothing otherwise."""
    module = importlib.import_module(f"benchmarks.bench_{name}")
    config = module.QUICK if quick else module.FULL
    return module.run(dataclasses.replace(config, space=True) if space and name == "app" else config)


def run(sections: list[str], quick: bool, argv: list[str], waited_s: float = 0.0,
        space: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "mode": "quick" if quick else "full",
            "command": "python -m benchmarks.run " + " ".join(argv), "machine": machine(), "versions": versions(),
            "git": git_state(), "environment": {k: v for k, v in sorted(os.environ.items())
                                                if k.startswith(("CIEA_", "OMP_", "MKL_", "OPENBLAS_"))},
            "loadavg_start": loadavg(), "waited_for_load_s": waited_s, "sections": sections}
    results: dict[str, Any] = {"meta": meta, "sections": {}}
    for name in sections:
        load_before = loadavg()
        log.info("section %s: start (load average %s)", name, load_before)
        t0 = time.perf_counter()
        try:
            results["sections"][name] = run_section(name, quick, space)
        except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others
            log.error("section %s failed:\n%s", name, traceback.format_exc())
            results["sections"][name] = {"title": name, "error": f"{type(exc).__name__}: {exc}", "figures": []}
        results["sections"][name]["seconds"] = round(time.perf_counter() - t0, 1)
        results["sections"][name]["loadavg"] = [load_before, loadavg()]
        log.info("section %s: %.1f s", name, time.perf_counter() - t0)
    meta["loadavg_end"] = loadavg()
    meta["wall_s"] = round(time.perf_counter() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small repeats and sizes: every figure in < 5 min")
    parser.add_argument("--only", help=f"comma-separated sections (default all: {','.join(report.SECTIONS)})")
    parser.add_argument("--md", help="write BENCHMARKS.md here ('-' for stderr, 'none' to skip); default: "
                                     "benchmarks/BENCHMARKS.md for a full run of every section, else none")
    parser.add_argument("--json", type=Path, help="also write the JSON results here")
    parser.add_argument("--wait-load", type=float, default=None,
                        help=f"first wait until the 1-min load average is below this (default: {report.LOAD_LIMIT} "
                             "for a full run, no wait for --quick)")
    parser.add_argument("--max-wait", type=float, default=LOAD_WAIT_MAX_S, help="longest wait for a quiet machine, s")
    parser.add_argument("--space", action="store_true",
                        help="app section: start python app.py from a copy of the Space upload's files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "faiss.loader", "gradio_client", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    sections = [s.strip() for s in args.only.split(",")] if args.only else list(report.SECTIONS)
    unknown = sorted(set(sections) - set(report.SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {', '.join(report.SECTIONS)}")
    limit = args.wait_load if args.wait_load is not None else (None if args.quick else report.LOAD_LIMIT)
    waited = wait_for_quiet(limit, args.max_wait) if limit else 0.0
    results = run(sections, args.quick, argv, waited, args.space)
    text = json.dumps(results, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    md = args.md or (str(BENCHMARKS_MD) if not (args.quick or args.only or args.space) else "none")
    if md == "-":
        sys.stderr.write(report.render(results))
    elif md != "none":
        Path(md).write_text(report.render(results, report.kept(BENCHMARKS_MD, report.HISTORICAL_HEADING),
                                          report.kept(BENCHMARKS_MD, report.PREFACE_HEADING)), encoding="utf-8")
        log.info("wrote %s", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

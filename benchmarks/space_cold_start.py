"""Cold start of the Space upload: the files ``python -m ciea space-files`` lists, copied into an
empty folder and started with ``python app.py``, as a Space starts them.

    taskset -c 0,1 python -m benchmarks.space_cold_start --runs 3     # 2 vCPUs, like cpu-basic

Per run: seconds from process start until the page answers HTTP 200, and until the first
``/search`` (plain HTTP, every retriever, stamps) returns results; then the medians as JSON.
The page is polled every 0.5 s (``benchmarks.soak.launch_app``), so that figure is up to 0.5 s late.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_app import HttpSearch
from benchmarks.soak import launch_app

ROOT = Path(__file__).resolve().parent.parent
QUERY = "an elephant"


def one_run(space: Path, work: Path) -> dict[str, float]:
    from ciea.retrievers import REGISTRY

    env = {"GRADIO_EXAMPLES_CACHE": str(work / "examples")}
    start = time.perf_counter()
    with launch_app(work / "app.log", 300, env, cwd=space) as app:
        page = time.perf_counter() - start
        answer = json.loads(HttpSearch(app.url)(QUERY, "stamps", sorted(REGISTRY), 10))
        first = time.perf_counter() - start
    results = answer[-1].get("results", {}) if isinstance(answer, list) else {}
    if not results:
        raise RuntimeError(f"/search gave no results: {str(answer)[:300]}")
    return {"page_s": round(page, 2), "first_search_s": round(first, 2), "retrievers": len(results)}


def main(argv: list[str] | None = None) -> int:
    from ciea.space import space_files

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="ciea-space-") as tmp:
        space = Path(tmp) / "space"
        for rel in space_files(ROOT):
            (space / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, space / rel)
        for i in range(args.runs):
            runs.append(one_run(space, Path(tmp)))
            print(f"run {i + 1}: {runs[-1]}", file=sys.stderr)
    summary = {key: statistics.median(r[key] for r in runs) for key in ("page_s", "first_search_s")}
    json.dump({"cpus": sorted(os.sched_getaffinity(0)), "load_average": os.getloadavg(), "runs": runs,
               "median": summary}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

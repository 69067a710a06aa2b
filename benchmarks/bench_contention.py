"""Thread settings under CPU contention, made reproducible: one busy-loop process holds a core
(as another tenant, a training job or a second request does on a shared 2-core host) while a fresh
process per setting answers cold queries on stamps. Ambient load comes and goes; this does not.

Each setting runs in its own process because ``OMP_WAIT_POLICY`` is read once, when torch loads
its OpenMP runtime. The probe (``python -m benchmarks.bench_contention --probe N``) prints JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.stats import Figure, figure, time_calls

CORPUS = "stamps"
K = 10
HOG = "while True:\n    pass\n"
PROBE_TIMEOUT_S = 600
#: Variables a setting may set; removed from the inherited environment so "as shipped" means defaults.
CONTROLLED = ("CIEA_THREADS", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")
SHIPPED = ("as shipped", {})  # one thread: ciea.config.SERVING_THREADS
EVERY_CORE = ("every core", {"CIEA_THREADS": str(os.cpu_count() or 1)})  # the serving default before
PASSIVE = ("every core, OMP_WAIT_POLICY=PASSIVE", {"CIEA_THREADS": str(os.cpu_count() or 1),
                                                    "OMP_WAIT_POLICY": "PASSIVE"})


@dataclass
class ContentionConfig:
    queries: int  # cold queries per figure
    variants: tuple[tuple[str, dict[str, str]], ...]
    hogs: int = 1  # busy-loop processes, each holding one core


QUICK = ContentionConfig(queries=4, variants=(SHIPPED, EVERY_CORE))
FULL = ContentionConfig(queries=20, variants=(SHIPPED, EVERY_CORE, PASSIVE))


def probe(n: int) -> dict[str, Any]:
    """In this process: ``n`` cold text-dense encodings and ``n`` cold all-retriever searches (ms)."""
    from benchmarks.bench_query import query_texts
    from ciea.service import SearchService

    service = SearchService()
    names = service.retrievers(CORPUS)
    if not names:
        raise RuntimeError(f"no retriever can answer on {CORPUS}")
    texts = query_texts(CORPUS, 2 * n + 1)
    service.search(texts[-1], CORPUS, names, K)  # warm-up: loads relevance tables, first-call costs
    encoder = service.retriever(CORPUS, names[0]).retriever
    encode = time_calls(lambda i: encoder.encode_queries([texts[max(i, 0)]]), n, warmup=0)
    search = time_calls(lambda i: service.search(texts[n + max(i, 0)], CORPUS, names, K), n, warmup=0)
    import torch

    return {"retrievers": names, "encoder": names[0], "encode_ms": encode, "search_ms": search,
            "torch_threads": torch.get_num_threads()}


@contextlib.contextmanager
def busy_cores(n: int) -> Iterator[None]:
    """``n`` busy-loop processes, each holding a core, for the duration of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(n)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.wait(timeout=10)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    return {**env, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", **extra}


def run(config: ContentionConfig) -> dict[str, Any]:
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    with busy_cores(config.hogs):
        for label, extra in config.variants:
            done = subprocess.run([sys.executable, "-m", "benchmarks.bench_contention", "--probe", str(config.queries)],
                                  env=_child_env(extra), capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                                  check=False)
            if done.returncode != 0:
                raise RuntimeError(f"probe [{label}] exited {done.returncode}: {done.stderr[-2000:]}")
            out = json.loads(done.stdout.strip().splitlines()[-1])
            details[label] = {"retrievers": out["retrievers"], "torch_threads": out["torch_threads"]}
            busy = f"{config.hogs} core{'s' if config.hogs > 1 else ''} busy"
            figures += [
                figure(f"{CORPUS} / {out['encoder']} query encoding (cold), {busy} [{label}]", out["encode_ms"], "ms",
                       note=f"torch threads {out['torch_threads']}"),
                figure(f"{CORPUS} / SearchService.search, all retrievers (cold), {busy} [{label}]",
                       out["search_ms"], "ms", note=", ".join(out["retrievers"])),
            ]
    return {
        "title": "Thread settings under CPU contention",
        "figures": [f.to_json() for f in figures],
        "variants": details,
        "notes": [
            (f"{config.hogs} busy-loop process(es) ran for the whole section, each holding a core, on top of "
             "whatever else the machine was running (see the load average in the header)."),
            ("Each setting is a fresh process (OMP_WAIT_POLICY is read when torch loads its OpenMP runtime); "
             f"{config.queries} cold queries each, after one warm-up search."),
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_contention", description=__doc__.splitlines()[0])
    parser.add_argument("--probe", type=int, required=True, help="cold queries to time in this process")
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.probe)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The app as a user meets it: ``python app.py`` launched on a free loopback port (the soak's
launcher), cold start to the first successful ``/search`` answer, peak resident memory with every
corpus loaded, and ``/search`` end to end through gradio_client with every retriever the app
offers selected, cold (distinct queries) and warm (a repeated query: the service's LRU hits).
Optionally a short soak (``benchmarks.soak.run_soak``) against the same process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import Figure, figure, target, time_calls

log = logging.getLogger(__name__)
HOG = "while True:\n    pass\n"


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
K = 10
FIRST_ANSWER_TIMEOUT_S = 300


@dataclass
class AppConfig:
    queries: int  # distinct /search queries per corpus (cold)
    warm_repeats: int
    #: (label, extra environment, cold starts (fresh processes), busy-loop processes holding a core meanwhile)
    variants: tuple[tuple[str, dict[str, str], int, int], ...]
    soak: dict[str, Any] | None = None  # run_soak keyword arguments, on the first launch of the first variant
    notes: list[str] = field(default_factory=list)


SHIPPED = "as shipped"
#: The serving default before one thread per process (BENCHMARKS.md's profile, item 1).
EVERY_CORE = ("every core", {"CIEA_THREADS": str(os.cpu_count() or 1)})
QUICK = AppConfig(queries=5, warm_repeats=5, variants=((SHIPPED, {}, 1, 0),),
                  soak={"clients": 4, "requests_per_client": 5})
FULL = AppConfig(queries=60, warm_repeats=60,
                 variants=((SHIPPED, {}, 3, 0), (*EVERY_CORE, 1, 0),
                           (f"{SHIPPED}, 1 core busy", {}, 1, 1),
                           (f"{EVERY_CORE[0]}, 1 core busy", EVERY_CORE[1], 1, 1)),
                 soak={"clients": 16, "duration_s": 120.0})  # 16 clients, text and image queries


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MB, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def search_choices(client) -> list[str]:
    """The retriever names the /search endpoint accepts (its checkbox choices)."""
    from benchmarks.soak import _enum
    from ciea.retrievers import REGISTRY

    api = client.view_api(print_info=False, return_format="dict") or {}
    params = {p.get("parameter_name"): p for p in api.get("named_endpoints", {}).get("/search", {}).get("parameters", [])}
    return _enum(params.get("retrievers", {})) or list(REGISTRY)


class HttpSearch:
    """/search over Gradio's plain HTTP API (POST /gradio_api/call/search, then the result's
    server-sent events), the way a browser's push connection gets it: no client-side polling."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url.rstrip("/") + "/gradio_api/call/search"
        self.http = httpx.Client(timeout=120)

    def __call__(self, *args: Any) -> str:
        event = self.http.post(self.url, json={"data": list(args)}).raise_for_status().json()["event_id"]
        kind = ""
        with self.http.stream("GET", f"{self.url}/{event}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    if kind == "error":
                        raise RuntimeError(f"/search failed: {line[5:200]}")
                    return line[5:]
        raise RuntimeError("/search stream ended without a result")


def search_figures(client, url: str, corpus: str, retrievers: list[str], texts: list[str], warm_repeats: int,
                   label: str) -> list[Figure]:
    """/search end to end through gradio_client: cold (each text once), warm (the first text
    repeated) and the round-trip floor (an empty query, refused at once); then the same cold
    queries over plain HTTP, which shows how much of the total is gradio_client's own polling."""
    def ask(text: str):
        return client.predict(text, corpus, retrievers, K, api_name="/search")

    http = HttpSearch(url)
    prefix = f"/search {corpus}, all retrievers [{label}]"
    half = max(1, len(texts) // 2)
    cold = time_calls(lambda i: ask(texts[i] if i >= 0 else texts[0] + " (warm-up)"), len(texts))
    warm = time_calls(lambda i: ask(texts[0]), warm_repeats)
    floor = time_calls(lambda i: ask(""), warm_repeats)
    raw_cold = time_calls(lambda i: http(texts[i] + " (http)" if i >= 0 else "warm-up (http)", corpus, retrievers, K),
                          half)
    raw_floor = time_calls(lambda i: http("", corpus, retrievers, K), half)
    return [
        figure(f"{prefix}: cold (distinct queries)", cold, "ms", note=", ".join(retrievers),
               target=target("/search, all retrievers: p50 <= 250 ms, p95 <= 500 ms", median_max=250, p95_max=500)),
        figure(f"{prefix}: warm (repeated query, LRU hit)", warm, "ms"),
        figure(f"{prefix}: round-trip floor (empty query, refused at once)", floor, "ms",
               note="Gradio queue + gradio_client cost with no search work"),
        figure(f"{prefix}: cold, plain HTTP + SSE", raw_cold, "ms",
               note="same app, no gradio_client (it polls its message queue every 50 ms)"),
        figure(f"{prefix}: round-trip floor, plain HTTP + SSE", raw_floor, "ms"),
    ]


@dataclass
class Launch:
    """What one cold start measured."""

    page_s: float
    first_answer_s: float
    retrievers: dict[str, list[str]]
    peak_rss_mb: float | None
    e2e: list[Figure] = field(default_factory=list)
    soak: dict | None = None


def launch_once(env: dict[str, str], config: AppConfig, label: str, with_e2e: bool, with_soak: bool) -> Launch:
    """One fresh ``python app.py``: time to page, time to first answer, then the measurements."""
    from benchmarks.soak import corpus_queries, discover, launch_app, make_client, payload, run_soak
    from ciea.config import Settings

    assets = Settings().assets_dir
    start = time.perf_counter()
    with launch_app(env=env) as app:
        page_s = time.perf_counter() - start
        client = make_client(app.url)
        names = search_choices(client)
        first_query = corpus_queries(assets, "stamps", 1)[0] if (assets / "stamps").is_dir() else "a frog"
        while True:
            answer = payload(client.predict(first_query, "stamps", names, K, api_name="/search"))
            if answer.get("results") and any(answer["results"].values()):
                break
            if time.perf_counter() - start > FIRST_ANSWER_TIMEOUT_S:
                raise RuntimeError(f"no successful /search answer within {FIRST_ANSWER_TIMEOUT_S} s: {answer}")
            time.sleep(0.2)
        first_s = time.perf_counter() - start
        workload = discover(client, assets, images=False)  # one query per corpus: every corpus loaded
        launch = Launch(page_s, first_s, workload.retrievers, None)
        if with_e2e:
            for corpus, retrievers in workload.retrievers.items():
                texts = list(dict.fromkeys(workload.queries[corpus]))[1:1 + config.queries]
                launch.e2e += search_figures(client, app.url, corpus, retrievers, texts, config.warm_repeats, label)
        if with_soak and config.soak:
            launch.soak = run_soak(app.url, pid=app.pid, **config.soak).to_json()
        launch.peak_rss_mb = peak_rss_mb(app.pid)
        alive = app.exit_code() is None
    if not alive:
        raise RuntimeError("the app exited during the benchmark")
    return launch


def run(config: AppConfig) -> dict[str, Any]:
    figures: list[Figure] = []
    soak = None
    retrievers: dict[str, list[str]] = {}
    for v, (label, env, count, hogs) in enumerate(config.variants):
        launches = []
        for i in range(count):
            log.info("app [%s]: launch %d of %d", label, i + 1, count)
            with busy_cores(hogs):
                launches.append(launch_once(env, config, label, with_e2e=i == 0,
                                            with_soak=i == 0 and v == 0))
        first = launches[0]
        retrievers = retrievers or first.retrievers
        soak = soak or first.soak
        figures += [
            figure(f"cold start: process start to page [{label}]", [x.page_s for x in launches], "s"),
            figure(f"cold start: process start to first /search answer [{label}]",
                   [x.first_answer_s for x in launches], "s", target=target("cold start to first answer <= 20 s", median_max=20),
                   note="stamps, every offered retriever selected; includes loading towers and indexes"),
            figure(f"peak RSS, every corpus loaded [{label}]",
                   [x.peak_rss_mb for x in launches if x.peak_rss_mb], "MB", target=target("app peak RSS <= 3 GiB", median_max=3072, p95_max=3072),
                   note="VmHWM of the app process after loading every corpus and answering the queries"
                        + (" and the soak" if first.soak else "")),
        ]
        figures += first.e2e
    return {
        "title": "The app (python app.py, gradio_client over loopback)",
        "retrievers": retrievers,
        "figures": [f.to_json() for f in figures],
        "soak": soak,
        "notes": [
            ("Cold start runs from just before the process is spawned to the first /search answer with results; "
            "the page itself answers earlier (row 'to page'). Every launch is a fresh process."),
            ("/search: one gradio_client session, one request at a time, k = 10, every retriever the app offers "
            "selected; cold queries are distinct texts of the corpus's query sets, warm repeats one text."),
            ("Variants: the environment the app was launched with; '1 core busy' means a busy-loop process held "
             "a core for that whole launch (a second tenant on a shared 2-core host)."),
            *config.notes,
        ],
    }

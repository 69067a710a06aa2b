"""The app as a user meets it: ``python app.py`` launched on a free loopback port (the soak's
launcher), cold start to the first successful ``/search`` answer, peak resident memory with every
corpus loaded, and ``/search`` end to end through gradio_client with every retriever the app
offers selected, cold (distinct queries) and warm (a repeated query: the service's LRU hits).
Optionally a short soak (``benchmarks.soak.run_soak``) against the same process.

``python -m benchmarks.run --only app --space`` starts the app instead from a copy of exactly the
files ``python -m ciea space-files`` lists, in an empty folder, as a Space starts them (run it under
``taskset -c 0,1`` for the 2 vCPUs of a cpu-basic Space).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.stats import Figure, figure, target, time_calls

log = logging.getLogger(__name__)
K = 10
FIRST_ANSWER_TIMEOUT_S = 300
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class AppConfig:
    queries: int  # distinct /search queries per corpus (cold)
    warm_repeats: int
    launches: int  # cold starts, each a fresh process; the first also measures /search and the soak
    soak: dict[str, Any] | None = None  # run_soak keyword arguments
    space: bool = False  # start from a copy of the Space upload instead of this checkout


QUICK = AppConfig(queries=5, warm_repeats=5, launches=1, soak={"clients": 4, "requests_per_client": 5})
FULL = AppConfig(queries=60, warm_repeats=60, launches=3,
                 soak={"clients": 16, "duration_s": 120.0})  # 16 clients, text and image queries


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


def copy_space(dest: Path) -> Path:
    """Exactly the files the Space upload takes (``python -m ciea space-files``), copied into ``dest``."""
    from ciea.space import space_files

    for rel in space_files(ROOT):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


def launch_once(folder: Path, config: AppConfig, label: str, with_e2e: bool) -> dict[str, Any]:
    """One fresh ``python app.py`` in ``folder``: seconds to page and to first answer, then (with
    ``with_e2e``) /search end to end and the soak, and last the peak resident memory."""
    from benchmarks.soak import corpus_queries, discover, endpoints, launch_app, make_client, payload, rss_mb, run_soak
    from ciea.config import Settings
    from ciea.retrievers import REGISTRY

    assets = Settings().assets_dir
    log.info("app [%s]: a fresh launch from %s", label, folder)
    start = time.perf_counter()
    with launch_app(cwd=folder) as app:
        page_s = time.perf_counter() - start
        client = make_client(app.url)
        names = endpoints(client)[1].get("retrievers") or list(REGISTRY)
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
        launch = {"page_s": page_s, "first_answer_s": first_s, "retrievers": workload.retrievers, "e2e": [],
                  "soak": None}
        if with_e2e:
            for corpus, retrievers in workload.retrievers.items():
                texts = list(dict.fromkeys(workload.queries[corpus]))[1:1 + config.queries]
                launch["e2e"] += search_figures(client, app.url, corpus, retrievers, texts, config.warm_repeats, label)
            launch["soak"] = run_soak(app.url, pid=app.pid, **config.soak).to_json() if config.soak else None
        launch["peak_rss_mb"] = rss_mb(app.pid, "VmHWM")
        alive = app.exit_code() is None
    if not alive:
        raise RuntimeError("the app exited during the benchmark")
    return launch


def run(config: AppConfig) -> dict[str, Any]:
    label = "Space files" if config.space else "as shipped"
    with tempfile.TemporaryDirectory(prefix="ciea-space-") as tmp:
        folder = copy_space(Path(tmp)) if config.space else ROOT
        launches = [launch_once(folder, config, label, with_e2e=i == 0) for i in range(config.launches)]
    first = launches[0]
    figures = [
        figure(f"cold start: process start to page [{label}]", [x["page_s"] for x in launches], "s"),
        figure(f"cold start: process start to first /search answer [{label}]",
               [x["first_answer_s"] for x in launches], "s",
               target=target("cold start to first answer <= 20 s", median_max=20),
               note="stamps, every offered retriever selected; includes loading towers and indexes"),
        figure(f"peak RSS, every corpus loaded [{label}]", [x["peak_rss_mb"] for x in launches if x["peak_rss_mb"]],
               "MB", target=target("app peak RSS <= 3 GiB", median_max=3072, p95_max=3072),
               note="VmHWM of the app process after loading every corpus and answering the queries"
                    + (" and the soak" if first["soak"] else "")),
        *first["e2e"],
    ]
    return {
        "title": "The app (python app.py, gradio_client over loopback)",
        "retrievers": first["retrievers"],
        "figures": figures,
        "soak": first["soak"],
        "notes": [
            ("Cold start runs from just before the process is spawned to the first /search answer with results; "
            "the page itself answers earlier (row 'to page'). Every launch is a fresh process"
             + (", started from a copy of the Space upload's files." if config.space else ".")),
            ("/search: one gradio_client session, one request at a time, k = 10, every retriever the app offers "
            "selected; cold queries are distinct texts of the corpus's query sets, warm repeats one text."),
        ],
    }

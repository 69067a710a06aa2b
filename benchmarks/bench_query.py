"""Query path in process: per retriever, query encoding, FAISS search and result assembly on the
shipped corpora; all retrievers together through ``SearchService.search`` and the Search tab's
render; a thread-count experiment; and the peer, the open_clip ViT-B-32 text tower (random
weights, identical compute to the production backbone) encoding the same queries.

Cold means a query text the process has not seen (the service's LRU of query vectors misses);
warm means the same text again (the LRU hits, only search and assembly run).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.stats import Figure, figure, target, time_calls

log = logging.getLogger(__name__)
K = 10
PEER_SPEC = "open_clip:ViT-B-32:none"


@dataclass
class QueryConfig:
    queries: int  # distinct texts per figure (cold figures use each once)
    warm_repeats: int
    peer_queries: int
    thread_counts: tuple[int, ...]  # torch and FAISS threads to compare; the first is the shipped default


def default_thread_counts() -> tuple[int, ...]:
    """The shipped serving setting first (CIEA_THREADS, else ``SERVING_THREADS``, as the search
    service decides), then every core when that differs (the default before serving used one)."""
    from ciea.config import SERVING_THREADS, THREADS_ENV

    shipped = int(os.environ.get(THREADS_ENV, "0") or 0) or SERVING_THREADS
    cores = os.cpu_count() or 1
    return (shipped,) if shipped == cores else (shipped, cores)


QUICK = QueryConfig(queries=6, warm_repeats=6, peer_queries=4, thread_counts=default_thread_counts())
FULL = QueryConfig(queries=60, warm_repeats=60, peer_queries=30, thread_counts=default_thread_counts())


class TextCounter:
    """Hands out fresh slices of each corpus's query texts (its judged query sets, else its
    captions), so every cold figure is really cold; past the end the texts come round again with
    a round number appended, still distinct."""

    def __init__(self) -> None:
        from benchmarks.soak import corpus_queries
        from ciea.config import Settings

        self.used: dict[str, int] = {}
        self.texts = lambda corpus: list(dict.fromkeys(corpus_queries(Settings().assets_dir, corpus, 100_000)))

    def take(self, corpus: str, n: int) -> list[str]:
        start, texts = self.used.get(corpus, 0), self.texts(corpus)
        if not texts:
            raise ValueError(f"{corpus} has no query texts")
        self.used[corpus] = start + n
        return [texts[i % len(texts)] + (f" ({i // len(texts) + 1})" if i >= len(texts) else "")
                for i in range(start, start + n)]


def _per_retriever(service, corpus: str, name: str, texts: list[str], warm_repeats: int, tag: str) -> list[Figure]:
    state = service.retriever(corpus, name)
    vectors: list[np.ndarray] = []
    hits: list[list] = []

    def encode(i: int) -> None:
        vec = state.retriever.encode_queries([texts[max(i, 0)]])
        if i >= 0:
            vectors.append(vec)

    def search(i: int) -> None:
        found = state.index.search(vectors[max(i, 0)], K)[0]
        if i >= 0:
            hits.append(found)

    def assemble(i: int) -> None:
        service.result_rows(corpus, hits[max(i, 0)])

    n = len(texts)
    enc = time_calls(encode, n, warmup=1)
    srch = time_calls(search, n, warmup=1)
    asm = time_calls(assemble, n, warmup=1)
    both = [a + b for a, b in zip(enc, srch, strict=True)]
    prefix = f"{corpus} / {name} [{tag}]"
    warm = time_calls(lambda i: service.search(texts[0], corpus, [name], K), warm_repeats, warmup=1)
    return [
        figure(f"{prefix}: query encoding (cold)", enc, "ms"),
        figure(f"{prefix}: FAISS search k={K}", srch, "ms", note=f"{len(state.index)} x {state.index.manifest.dim}, "
               f"{state.index.manifest.factory}"),
        figure(f"{prefix}: result assembly", asm, "ms"),
        figure(f"{prefix}: encode + search (cold)", both, "ms", target=target("per retriever encode + search p50 <= 30 ms", median_max=30)),
        figure(f"{prefix}: SearchService.search (warm, LRU hit)", warm, "ms"),
    ]


def _all_retrievers(service, corpus: str, names: list[str], texts: list[str], fresh: list[str],
                    warm_repeats: int, tag: str) -> list[Figure]:
    from ciea.ui.search_tab import SearchActions

    actions = SearchActions(service)
    prefix = f"{corpus} / all retrievers [{tag}]"
    n = len(texts)
    cold = time_calls(lambda i: actions.search(texts[i] if i >= 0 else texts[0] + " (warm-up)", corpus, names, K), n)
    warm = time_calls(lambda i: actions.search(texts[0], corpus, names, K), warm_repeats)
    service.share_text_encoding = False  # before: without the per-text cache every retriever ran the tower
    try:
        separate = time_calls(lambda i: actions.search(fresh[i] if i >= 0 else fresh[0] + " (warm-up)", corpus, names,
                                                     K), n)
    finally:
        service.share_text_encoding = True
    response = service.search(texts[0], corpus, names, K)
    render = time_calls(lambda i: actions.render(response), n)
    return [
        figure(f"{prefix}: search handler (cold)", cold, "ms",
               note=f"service.search + HTML/JSON render; {', '.join(names)}"),
        figure(f"{prefix}: search handler (warm, LRU hit)", warm, "ms"),
        figure(f"{prefix}: search handler (cold), text encoded per retriever", separate, "ms",
               note="before: each retriever ran the text tower on the same text"),
        figure(f"{prefix}: render (HTML + JSON)", render, "ms"),
    ]


def _peer(texts: list[str], tag: str) -> list[Figure]:
    from ciea.backbones import load_backbone

    peer = load_backbone(PEER_SPEC, device="cpu")
    enc = time_calls(lambda i: peer.encode_text([texts[max(i, 0)]]), len(texts))
    return [figure(f"peer: open_clip ViT-B-32 text tower, query encoding [{tag}]", enc, "ms",
                   note="random weights, same compute as laion2b_s34b_b79k")]


def run(config: QueryConfig) -> dict[str, Any]:
    """Per-retriever and all-retriever figures for each thread count in ``config``."""
    import faiss
    import torch

    from ciea.config import configure_threads
    from ciea.service import SearchService

    start = time.perf_counter()
    service = SearchService()
    service.backbone  # noqa: B018 - loading is not part of any query figure
    ready = {c: service.retrievers(c) for c in service.corpora()}
    load_s = time.perf_counter() - start
    texts = TextCounter()
    figures: list[Figure] = []
    for threads in config.thread_counts:
        configure_threads(threads)
        tag = f"{threads} thread{'s' if threads > 1 else ''}"
        for corpus, names in ready.items():
            for name in names:
                figures += _per_retriever(service, corpus, name, texts.take(corpus, config.queries),
                                          config.warm_repeats, tag)
            if len(names) > 1:
                figures += _all_retrievers(service, corpus, names, texts.take(corpus, config.queries),
                                           texts.take(corpus, config.queries), config.warm_repeats, tag)
        peer_corpus = next(iter(ready))
        figures += _peer(texts.take(peer_corpus, config.peer_queries), tag)
    configure_threads()
    return {
        "title": "Query path (in process)",
        "retrievers": ready,
        "unavailable": {c: service.unavailable(c) for c in ready},
        "thread_counts": list(config.thread_counts),
        "torch_threads_after": torch.get_num_threads(),
        "faiss_threads_after": faiss.omp_get_max_threads(),
        "load_s": round(load_s, 2),
        "figures": [f.to_json() for f in figures],
        "notes": [
            ("Cold: a query text not seen before in this process (the service's query-vector LRU misses); "
            "warm: the same text again (LRU hit: only search and assembly run)."),
            (f"Each cold figure uses its own {config.queries} distinct texts from the corpus's query sets "
            "(stamps: captions); k = 10; one untimed warm-up call first."),
            ("Thread counts set torch and FAISS together (ciea.config.configure_threads); the first is what the "
            "app ships with (CIEA_THREADS, else every core)."),
        ],
    }

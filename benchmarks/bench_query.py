"""Query path in process: per retriever, query encoding, FAISS search and result assembly on the
shipped corpora; all retrievers together through ``SearchService.search`` and the Search tab's
render; and the peer, the open_clip ViT-B-32 text tower (random weights, identical compute to
the production backbone) encoding the same queries. It runs with the serving thread count
(``SearchService`` sets it); the figures name it.

Cold means a query text the process has not seen (the service's LRU of query vectors misses);
warm means the same text again (the LRU hits, only search and assembly run).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.stats import Figure, figure, target, time_calls, time_each

K = 10
PEER_SPEC = "open_clip:ViT-B-32:none"


@dataclass
class QueryConfig:
    queries: int  # distinct texts per figure (cold figures use each once)
    warm_repeats: int
    peer_queries: int


QUICK = QueryConfig(queries=6, warm_repeats=6, peer_queries=4)
FULL = QueryConfig(queries=60, warm_repeats=60, peer_queries=30)


def fresh_texts(corpus: str) -> Iterator[str]:
    """A corpus's query texts (its judged query sets, else its captions), each once, so every cold
    figure is really cold; past the end they come round again with a round number appended."""
    from benchmarks.soak import corpus_queries
    from ciea.config import Settings

    texts = list(dict.fromkeys(corpus_queries(Settings().assets_dir, corpus, 100_000)))
    for i in itertools.count():
        yield texts[i % len(texts)] + (f" ({i // len(texts) + 1})" if i >= len(texts) else "")


def _per_retriever(service, corpus: str, name: str, texts: list[str], warm_repeats: int, tag: str) -> list[Figure]:
    state = service.retriever(corpus, name)
    enc, vectors = time_each(lambda text: state.retriever.encode_queries([text]), texts)
    srch, hits = time_each(lambda vector: state.index.search(vector, K)[0], vectors)
    asm, _ = time_each(lambda found: service.result_rows(corpus, found), hits)
    both = [a + b for a, b in zip(enc, srch, strict=True)]
    prefix = f"{corpus} / {name} [{tag}]"
    warm = time_calls(lambda i: service.search(texts[0], corpus, [name], K), warm_repeats)
    return [
        figure(f"{prefix}: query encoding (cold)", enc, "ms"),
        figure(f"{prefix}: FAISS search k={K}", srch, "ms", note=f"{len(state.index)} x {state.index.manifest.dim}, "
               f"{state.index.manifest.factory}"),
        figure(f"{prefix}: result assembly", asm, "ms"),
        figure(f"{prefix}: encode + search (cold)", both, "ms",
               target=target("per retriever encode + search p50 <= 30 ms", median_max=30)),
        figure(f"{prefix}: SearchService.search (warm, LRU hit)", warm, "ms"),
    ]


def _all_retrievers(service, corpus: str, names: list[str], texts: list[str], warm_repeats: int,
                    tag: str) -> list[Figure]:
    from ciea.ui.search_tab import SearchActions

    actions = SearchActions(service)
    prefix = f"{corpus} / all retrievers [{tag}]"
    n = len(texts)
    cold = time_calls(lambda i: actions.search(texts[i] if i >= 0 else texts[0] + " (warm-up)", corpus, names, K), n)
    warm = time_calls(lambda i: actions.search(texts[0], corpus, names, K), warm_repeats)
    response = service.search(texts[0], corpus, names, K)
    render = time_calls(lambda i: actions.render(response), n)
    return [
        figure(f"{prefix}: search handler (cold)", cold, "ms",
               note=f"service.search + HTML/JSON render; {', '.join(names)}"),
        figure(f"{prefix}: search handler (warm, LRU hit)", warm, "ms"),
        figure(f"{prefix}: render (HTML + JSON)", render, "ms"),
    ]


def _peer(texts: list[str], tag: str) -> list[Figure]:
    from ciea.backbones import load_backbone

    peer = load_backbone(PEER_SPEC, device="cpu")
    enc, _ = time_each(lambda text: peer.encode_text([text]), texts)
    return [figure(f"peer: open_clip ViT-B-32 text tower, query encoding [{tag}]", enc, "ms",
                   note="random weights, same compute as laion2b_s34b_b79k")]


def run(config: QueryConfig) -> dict[str, Any]:
    """Per-retriever and all-retriever figures, and the peer, at the serving thread count."""
    import faiss
    import torch

    from ciea.service import SearchService

    start = time.perf_counter()
    service = SearchService()
    service.backbone  # noqa: B018 - loading is not part of any query figure
    ready = {c: service.retrievers(c) for c in service.corpora()}
    load_s = time.perf_counter() - start
    streams = {corpus: fresh_texts(corpus) for corpus in ready}
    take = lambda corpus, n: list(itertools.islice(streams[corpus], n))  # noqa: E731
    figures: list[Figure] = []
    threads = torch.get_num_threads()
    tag = f"{threads} thread{'s' if threads > 1 else ''}"
    for corpus, names in ready.items():
        for name in names:
            figures += _per_retriever(service, corpus, name, take(corpus, config.queries), config.warm_repeats,
                                      tag)
        if len(names) > 1:
            figures += _all_retrievers(service, corpus, names, take(corpus, config.queries),
                                       config.warm_repeats, tag)
    figures += _peer(take(next(iter(ready)), config.peer_queries), tag)
    return {
        "title": "Query path (in process)",
        "retrievers": ready,
        "unavailable": {c: service.unavailable(c) for c in ready},
        "threads": {"torch": threads, "faiss": faiss.omp_get_max_threads()},
        "load_s": round(load_s, 2),
        "figures": figures,
        "notes": [
            ("Cold: a query text not seen before in this process (the service's query-vector LRU misses); "
            "warm: the same text again (LRU hit: only search and assembly run)."),
            (f"Each cold figure uses its own {config.queries} distinct texts from the corpus's query sets "
            "(stamps: captions); k = 10; one untimed warm-up call first."),
            ("Threads: what the search service sets for torch and FAISS (CIEA_THREADS, else one per serving "
             "process; ciea.config.SERVING_THREADS), named in each figure."),
        ],
    }

"""Seeded ablations of the CIEA head: each variant trained from scratch under the same budget,
then scored (MRR@10 per query kind) on the dev and test splits of scenes and emoji.

    python -m ciea ablate --seeds 0 1 2 --max-minutes 2          # every variant, 3 seeds, 2 minutes each
    python -m ciea ablate --variants shipped "mean pooling" --epochs 2   # 2 epochs each, whatever they take

A budget in epochs gives every variant the same training pairs and does not depend on what else
the machine runs; one in minutes is equal wall time (how 9 and 49 patch tokens are compared).
One JSON file per (variant, seed, budget) under ``--out`` (default ``.cache/ablations``), so an
interrupted run resumes where it stopped; the summary table (mean and spread over seeds) is
printed as Markdown. Choices are made on dev; test is reported beside it, never used to choose.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ciea.config import Settings
from ciea.validation import InputError

log = logging.getLogger(__name__)

#: Each variant changes one thing of the shipped schedule (``ciea.train.SCHEDULES["ciea"]``);
#: ``ciea`` entries override the head's ``CIEAConfig`` fields.
VARIANTS: dict[str, dict] = {
    "shipped": {},
    "no caption anchor": {"ciea": {"anchor": False}},
    "mean pooling": {"ciea": {"attention_pool": False}},
    "no complementarity weights": {"use_weights": False},
    "lambda 0 (no L_comp)": {"lam": 0.0},
    "lambda 0.1 (the paper's)": {"lam": 0.1},
    "lambda 0.3": {"lam": 0.3},
    "49 patch tokens": {"ciea": {"patch_grid": 0}},
    "LoRA adapter (rank 8)": {"ciea": {"adapter_rank": 8}},
    "second stage (2 epochs)": {"hard_negative_epochs": 2},
}
#: Scored corpora and splits; scenes' kinds include the probe kinds where the assets have them.
SCORED = {"scenes": ("dev", "test"), "emoji": ("dev", "test")}
PROBE_MEAN = ("binding", "spatial", "count", "unseen")
#: Columns of a summary table, all of one split: (label, corpus, kind); "probe mean" averages
#: ``PROBE_MEAN``.
COLUMNS = (
    ("scenes complementary", "scenes", "complementary"),
    ("scenes probe mean", "scenes", "probe mean"),
    ("scenes caption", "scenes", "caption"),
    ("emoji attribute", "emoji", "attribute"),
    ("emoji name", "emoji", "name"),
)


def variant_config(name: str, seed: int, max_minutes: float | None, epochs: int | None = None):
    """The shipped CIEA schedule with variant ``name`` applied, at ``seed``, for ``epochs``
    epochs (no time limit) when given, else within ``max_minutes``."""
    from ciea.train import default_config

    if name not in VARIANTS:
        raise InputError(f"Unknown ablation variant {name!r}; known: {', '.join(VARIANTS)}.")
    budget = {"epochs": epochs, "max_minutes": None} if epochs else {"max_minutes": max_minutes}
    return default_config("ciea", seed=seed, **budget, **VARIANTS[name])


def score_head(backbone, head, head_config: dict, settings: Settings) -> dict:
    """MRR@10 per corpus, split and query kind of a CIEA head, every query ranked over the whole
    corpus (as ``python -m ciea eval`` does)."""
    from ciea.checkpoints import Checkpoint
    from ciea.data.schema import load_corpus
    from ciea.evaluate import Evaluator, QuerySet
    from ciea.features import cached_corpus_features
    from ciea.retrievers.ciea import CIEARetriever

    state = {k: v.detach().cpu() for k, v in head.state_dict().items()}
    retriever = CIEARetriever(backbone, settings, Checkpoint(state, {"head": head_config}, "", Path("<memory>")))
    out: dict = {}
    for corpus_name, splits in SCORED.items():
        corpus = load_corpus(corpus_name, settings.assets_dir)
        features = cached_corpus_features(corpus, backbone, settings.cache_dir, progress=False)
        documents = retriever.encode_documents(corpus, features)
        doc_ids = [d.doc_id for d in corpus.documents]
        for split in splits:
            query_set = QuerySet.shipped(settings.corpus_dir(corpus_name), split)
            if query_set is None:
                continue
            scores = retriever.encode_queries(query_set.texts) @ documents.T
            metrics = Evaluator.from_query_set(query_set).score_matrix(scores, doc_ids)
            kinds = {kind: round(m["mrr@10"], 4) for kind, m in metrics.items()}
            probes = [kinds[k] for k in PROBE_MEAN if k in kinds]
            if len(probes) == len(PROBE_MEAN):
                kinds["probe mean"] = round(float(np.mean(probes)), 4)
            out.setdefault(corpus_name, {})[split] = kinds
    return out


def run_one(name: str, seed: int, max_minutes: float | None, epochs: int | None, data, backbone,
            settings: Settings) -> dict:
    from ciea.train import train_ciea

    config = variant_config(name, seed, max_minutes, epochs)
    train, devs = data
    start = time.perf_counter()
    head, extra, history = train_ciea(backbone, train, devs, config, progress=False)
    seconds = time.perf_counter() - start
    return {"variant": name, "seed": seed, "max_minutes": max_minutes, "budget_epochs": epochs,
            "train_seconds": round(seconds, 1),
            "epochs": history[-1]["epoch"], "best_epoch": extra["best_epoch"],
            "selection": round(extra["dev_mrr10"], 4), "mrr10": score_head(backbone, head, extra["head"], settings)}


def result_path(out: Path, name: str, seed: int, max_minutes: float | None, epochs: int | None = None) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return out / f"{slug}-seed{seed}-{f'{epochs}ep' if epochs else f'{max_minutes:g}min'}.json"


def run_ablations(variants: Sequence[str], seeds: Sequence[int], max_minutes: float | None, out: Path,
                  settings: Settings | None = None, epochs: int | None = None) -> list[dict]:
    """Train and score every (variant, seed) not already in ``out``; returns every result there."""
    from ciea.backbones import load_backbone
    from ciea.train import load_training_data

    settings = settings or Settings()
    out.mkdir(parents=True, exist_ok=True)
    # seed-major: an interrupted run still has every variant at the first seeds
    path = {(v, s): result_path(out, v, s, max_minutes, epochs) for v in variants for s in seeds}
    todo = [(v, s) for s in seeds for v in variants if not path[v, s].is_file()]
    for v in variants:
        variant_config(v, 0, max_minutes, epochs)  # refuse an unknown name before any training
    if todo:
        backbone = load_backbone(settings.backbone)
        data = load_training_data(backbone, settings, progress=False)
        for i, (name, seed) in enumerate(todo, 1):
            log.info("ablation %d of %d: %s, seed %d", i, len(todo), name, seed)
            result = run_one(name, seed, max_minutes, epochs, data, backbone, settings)
            path[name, seed].write_text(json.dumps(result, indent=1) + "\n")
    return [json.loads(path[v, s].read_text()) for v in variants for s in seeds]


def summary_table(results: Sequence[Mapping], split: str = "test") -> str:
    """Markdown: one row per variant, mean ± standard deviation over seeds of each column of
    ``split``, after the training's own dev selection score (mean dev MRR@10 of its dev sets)."""
    by_variant: dict[str, list[Mapping]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    header = ["variant", "seeds", "epochs", "selection (dev)", *(f"{c[0]} ({split})" for c in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cell(values: list[float]) -> str:
        spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        return f"{statistics.mean(values):.3f}{spread}" if values else "-"

    for name, runs in by_variant.items():
        cells = [name, str(len(runs)), f"{statistics.mean(r['epochs'] for r in runs):.1f}",
                 cell([r["selection"] for r in runs])]
        for _, corpus, kind in COLUMNS:
            cells.append(cell([v for r in runs if (v := r["mrr10"].get(corpus, {}).get(split, {}).get(kind))
                               is not None]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

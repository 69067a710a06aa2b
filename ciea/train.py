"""Training the heads of the trainable retrievers on frozen backbone features.

Data (never a test split): stamps caption -> image pairs (the stamp's image alone is the
document, so the image path must carry the caption's meaning), the scenes training split
(queries naming objects the caption does not mention) and the emoji training pairs (Noto and
Twemoji drawings of train concepts: keyword texts and attribute queries against image +
caption, and caption -> image). Pairs whose documents share a caption are batched together,
so each batch holds the hard negatives a complementary query must beat. Frozen features are
encoded once and cached; only small heads are trained, so the language model and image tower
stay frozen and checkpoints stay small. Early stopping on the mean dev MRR@10 of scenes (dev
queries over the training and dev scenes, as test queries rank the whole corpus) and emoji
(OpenMoji, a drawing style never trained on, dev concepts only).

- ``dual-split`` / ``dual-fused``: a linear image -> text map, InfoNCE with the retriever's
  own scoring (split: mean of caption and image cosines; fused: normalise(t + i)).
- ``dual-gcl``: the same map trained with GCL over (image, query text, fused document).
- ``ciea``: projector + complementary extractor through the frozen language model,
  L = L_c + lambda * L_comp.

Optionally a second stage (``hard_negative_epochs``, as the reference code's DPR/ANCE stage):
from the best first-stage head, the top-ranked non-relevant training documents of each text
query are mined once, and each later batch adds one of them per query to the candidates.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ciea.backbones import Backbone, load_backbone
from ciea.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from ciea.config import Settings
from ciea.data.materialise import ensure_corpus_images
from ciea.data.schema import CORPUS_FILE, Document, Query, load_corpus
from ciea.evaluate import Evaluator, QuerySet
from ciea.features import CorpusFeatures, cached_corpus_features
from ciea.losses import (DEFAULT_LAMBDA, HardNegatives, LogitScale, ciea_loss, complementary_query_ids, gcl_loss,
                         has_content, info_nce)
from ciea.retrievers import REGISTRY, TRAINABLE
from ciea.retrievers.alignment import TrainedAlignment
from ciea.retrievers.ciea import ALIGN_SCALE, CIEAConfig, CIEAHead, encode_documents_with, encode_in_batches
from ciea.retrievers.dual import DualEncoderRetriever

log = logging.getLogger(__name__)
TRAIN_SPLIT, DEV_SPLIT = "train", "dev"
#: Training pairs come from these corpora (never from a test split) ...
DEFAULT_CORPORA = ("stamps", "scenes", "emoji-train")
#: ... and early stopping averages the dev MRR@10 of these, per query kind (emoji: OpenMoji, a
#: drawing style never trained on).
DEV_CORPORA = ("scenes", "emoji")
#: Pairs of these corpora appear this many times per epoch: the emoji pairs are the only ones
#: that name colours and categories, and scenes' 9.6k queries would otherwise outnumber them 4:1.
TRAIN_REPEATS = {"emoji-train": 3}


@dataclass
class TrainConfig:
    """Schedule and seeds; saved into every checkpoint's JSON."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 3
    seed: int = 0
    lam: float = DEFAULT_LAMBDA  # CIEA: weight of L_comp
    pairs_per_epoch: int | None = None  # None = every training query once per epoch
    use_weights: bool = True  # CIEA ablation: complementarity-weighted attention
    device: str = "cpu"
    max_minutes: float | None = None  # training-time budget: no epoch starts that would (judging by the last) pass it
    resume: bool = False  # start from the retriever's saved checkpoint instead of a fresh head
    bf16: bool = False  # bfloat16 autocast for training steps where the hardware has it (AMX / CUDA)
    group_size: int = 8  # pairs drawn together from documents sharing a caption (hard negatives); 1 = random
    align_weight: float = 1.0  # CIEA: weight of the weight map's patch-caption alignment loss
    ciea: dict = field(default_factory=dict)  # CIEA: CIEAConfig overrides (patch_grid, anchor, ...)
    hard_negative_epochs: int = 0  # second stage: epochs with mined hard negatives (0 = none)
    hard_negative_pool: int = 10  # mined negatives kept per query; one is drawn per epoch


#: CIEA pushes every batch through the language model, so its CPU schedule samples 4,096 pairs
#: per epoch (each epoch's dev scoring encodes about 5,000 dev documents, so shorter epochs would
#: spend the budget on scoring) and its epochs stop within 18 minutes (preparation comes on top; the
#: whole `python -m ciea train` took about 27 to 30 minutes on 2 cores; README, "Training the heads").
#: 3 x 3 patch tokens (the 7 x 7 grid average-pooled): at equal wall time on 2 cores they reached a
#: higher dev MRR@10 than 49 tokens (README, "CIEA here").
#: lam 1 (the paper's 0.1 is DEFAULT_LAMBDA): the best dev score of 0.1, 0.3 and 1 after 3 epochs
#: each (`python -m ciea ablate`; 0 came last in an earlier sweep; README, "CIEA here").
SCHEDULES: dict[str, dict] = {
    "ciea": {"epochs": 40, "batch_size": 64, "pairs_per_epoch": 4096, "patience": 4, "lr": 2e-3, "bf16": True,
             "max_minutes": 18.0, "lam": 1.0, "ciea": {"patch_grid": 3}},
}


def default_config(name: str, **overrides) -> TrainConfig:
    """The schedule ``python -m ciea train`` uses for retriever ``name``, with ``overrides``; a
    ``ciea`` override adds to the schedule's head options instead of replacing them."""
    schedule = SCHEDULES.get(name, {})
    head = {**schedule.get("ciea", {}), **overrides.pop("ciea", {})}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return TrainConfig(**{"device": device, **schedule, **overrides, "ciea": head})


@dataclass
class Pair:
    """One training query with the rows of its relevant documents (one is sampled per epoch)."""

    query: str
    positives: tuple[int, ...]
    image_only: bool  # the document is shown without its caption (stamps caption -> image)
    kind: str = ""  # the query kind, where the corpus gives one (dev sets are per kind)


@dataclass
class Split:
    """Documents with frozen features, and the query pairs that point into them."""

    name: str
    documents: list[Document]
    features: CorpusFeatures
    pairs: list[Pair]
    _query_vectors: dict = field(default_factory=dict, repr=False)

    def query_vectors(self, backbone: Backbone) -> np.ndarray:
        """The pairs' query texts through the frozen text tower, encoded once per backbone and
        shared by every head trained on this split (it was a minute or more per head)."""
        if backbone.spec not in self._query_vectors:
            self._query_vectors[backbone.spec] = backbone.encode_text([p.query for p in self.pairs])
        return self._query_vectors[backbone.spec]


@dataclass
class TrainResult:
    retriever: str
    checkpoint: Checkpoint
    best_epoch: int
    dev_mrr10: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _split_rows(corpus, split: str) -> np.ndarray:
    """Rows of the documents tagged ``split`` (every row when the corpus has no split tags)."""
    tagged = [i for i, d in enumerate(corpus) if d.category == split]
    return np.array(tagged if tagged else range(len(corpus)), dtype=np.int64)


def _split_pairs(corpus, split: str, rows: np.ndarray) -> list[Pair] | None:
    """The ``split`` query pairs over the documents at ``rows``, if the corpus ships that split.

    Qrels may name documents anywhere; only positives among ``rows`` are kept (as positions
    in ``rows``), and queries left without one are dropped.
    """
    shipped = QuerySet.shipped(corpus.root, split)
    if shipped is None:
        return None
    local = {corpus.documents[r].doc_id: j for j, r in enumerate(rows)}
    queries, qrels = shipped
    pairs = []
    for q in queries:
        pos = tuple(sorted(local[d] for d, rel in qrels.get(q.qid, {}).items() if rel > 0 and d in local))
        if pos:
            pairs.append(Pair(q.text, pos, image_only=False, kind=q.kind))
    return pairs


def _caption_pairs(documents: Sequence[Document]) -> list[Pair]:
    """Caption -> image pairs: the image alone is the document (duplicate captions share positives)."""
    by_caption: dict[str, list[int]] = {}
    for i, d in enumerate(documents):
        if d.image is not None:
            by_caption.setdefault(d.text, []).append(i)
    return [Pair(text, tuple(rows), image_only=True) for text, rows in by_caption.items()]


def _corpus_training(corpus) -> tuple[np.ndarray, list[Pair]]:
    """Training rows and pairs of one corpus (positions within those rows).

    A corpus with split-tagged documents (scenes) gives its train-split queries over its
    train documents. One without tags is all training data (stamps, emoji-train): its
    caption -> image pairs, plus its shipped train queries if it has them.
    """
    rows = _split_rows(corpus, TRAIN_SPLIT)
    pairs = _split_pairs(corpus, TRAIN_SPLIT, rows) or []
    if len(rows) == len(corpus):
        pairs = _caption_pairs(corpus.documents) + pairs
    return rows, pairs


def _corpus_dev(corpus, features: CorpusFeatures) -> list[Split]:
    """The corpus's dev queries over every non-test document (test queries rank the whole
    corpus, so training documents stay in as distractors), one set per query kind, so that
    early stopping weighs caption-answerable and image-only kinds alike."""
    tagged = any(d.category == DEV_SPLIT for d in corpus)
    rows = (np.concatenate([_split_rows(corpus, TRAIN_SPLIT), _split_rows(corpus, DEV_SPLIT)]) if tagged
            else np.arange(len(corpus)))
    pairs = _split_pairs(corpus, DEV_SPLIT, rows) or []
    documents, features = [corpus.documents[r] for r in rows], features.subset(rows)
    kinds = sorted({p.kind for p in pairs})
    return [Split(f"{corpus.name}/{kind}" if kind else corpus.name, documents, features,
                  [p for p in pairs if p.kind == kind]) for kind in kinds]


def load_training_data(backbone: Backbone, settings: Settings, corpora: Sequence[str] = DEFAULT_CORPORA,
                       dev_corpora: Sequence[str] | None = None, progress: bool = True
                       ) -> tuple[Split, list[Split]]:
    """(train, dev sets): training pairs from ``corpora`` (never a test split) and one dev set per
    query kind of each corpus of ``dev_corpora`` that ships a dev split (default: those of ``DEV_CORPORA`` present,
    else ``corpora``).

    Dev sets are scored separately and averaged, so early stopping weighs each corpus and kind alike.
    Without any dev split, the caption pairs of the training documents stand in (tiny corpora).
    """
    if dev_corpora is None:
        present = [c for c in DEV_CORPORA if (settings.corpus_dir(c) / CORPUS_FILE).is_file()]
        dev_corpora = present or list(corpora)
    parts, docs, pairs, devs = [], [], [], []
    for name in dict.fromkeys([*corpora, *dev_corpora]):
        corpus = load_corpus(name, settings.assets_dir)
        ensure_corpus_images(corpus, progress=progress)
        features = cached_corpus_features(corpus, backbone, settings.cache_dir, progress)
        if name in corpora:
            rows, local_pairs = _corpus_training(corpus)
            local_pairs = local_pairs * TRAIN_REPEATS.get(name, 1)
            offset = len(docs)
            pairs += [Pair(p.query, tuple(offset + r for r in p.positives), p.image_only) for p in local_pairs]
            parts.append(features.subset(rows))
            docs += [corpus.documents[r] for r in rows]
        if name in dev_corpora:
            devs += _corpus_dev(corpus, features)
    train = Split("train", docs, CorpusFeatures.concatenate(parts), pairs)
    if not devs:
        log.warning("no dev split in %s: early stopping on training captions", ", ".join(corpora))
        caption = [Pair(p.query, p.positives, False) for p in pairs if p.image_only] or pairs
        devs = [Split("train captions", docs, train.features, caption)]
    return train, devs


def bf16_available(device: str) -> bool:
    """Whether bfloat16 matmuls are native here (CUDA, or x86 CPUs with AMX / AVX512-BF16)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def caption_groups(documents: Sequence[Document]) -> list[int]:
    """A group id per document row: documents with the same caption share one."""
    ids: dict[str, int] = {}
    return [ids.setdefault(d.text, len(ids)) for d in documents]


def _epoch_batches(pairs: Sequence[Pair], config: TrainConfig, rng: random.Random,
                   row_groups: Sequence[int] | None = None) -> list[list[tuple[int, int]]]:
    """Batches of (pair index, sampled positive row) for one epoch.

    With ``row_groups`` and ``config.group_size`` > 1, pairs whose documents share a caption
    arrive in runs of ``group_size``: scenes a caption cannot tell apart then meet as in-batch
    negatives, which is what complementary queries test. Runs are shuffled, so a batch still
    mixes several captions.
    """
    order = list(range(len(pairs)))
    rng.shuffle(order)
    sampled = [(i, rng.choice(pairs[i].positives)) for i in order]
    if row_groups is not None and config.group_size > 1:
        by_group: dict[int, list[tuple[int, int]]] = {}
        for item in sampled:
            by_group.setdefault(row_groups[item[1]], []).append(item)
        size = config.group_size
        runs = [g[s : s + size] for g in by_group.values() for s in range(0, len(g), size)]
        rng.shuffle(runs)
        sampled = [item for run in runs for item in run]
    if config.pairs_per_epoch:
        sampled = sampled[: config.pairs_per_epoch]
    return [sampled[s : s + config.batch_size] for s in range(0, len(sampled), config.batch_size)
            if len(sampled[s : s + config.batch_size]) > 1]


def false_negative_mask(pairs: Sequence[Pair], batch: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(B, B) True where batch document j is also relevant to query i (j != i)."""
    n = len(batch)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for a, (pi, _) in enumerate(batch):
        positives = set(pairs[pi].positives)
        for b, (_, row) in enumerate(batch):
            if a != b and row in positives:
                mask[a, b] = True
    return mask


def mine_hard_negatives(train: Split, query_vectors: np.ndarray, doc_vectors: np.ndarray, pool: int,
                        chunk: int = 1024) -> list[tuple[int, ...]]:
    """Per pair, the ``pool`` best-scoring training documents that are not relevant to it.

    Text queries only: caption -> image pairs get none (their document is shown without its
    caption, which the mined full documents are not). Documents whose caption is the query
    itself are skipped too: a query cannot tell such duplicates apart, so they are not negatives.
    """
    texts = [d.text for d in train.documents]
    mined: list[tuple[int, ...]] = [()] * len(train.pairs)
    todo = [i for i, p in enumerate(train.pairs) if not p.image_only]
    for s in range(0, len(todo), chunk):
        idx = todo[s : s + chunk]
        order = np.argsort(-(query_vectors[idx] @ doc_vectors.T), axis=1, kind="stable")
        for i, ranked in zip(idx, order):
            pair, positives = train.pairs[i], set(train.pairs[i].positives)
            keep = []
            for row in ranked:
                if row not in positives and texts[row] != pair.query:
                    keep.append(int(row))
                    if len(keep) == pool:
                        break
            mined[i] = tuple(keep)
    return mined


def hard_negative_rows(pairs: Sequence[Pair], batch: Sequence[tuple[int, int]], negatives: Sequence[int | None] | None
                       ) -> tuple[list[int], torch.Tensor] | None:
    """The rows of a batch's mined negatives and the (B, H) mask of those relevant to each query."""
    rows = [r for r in negatives or () if r is not None]
    if not rows:
        return None
    relevant = torch.tensor([[r in pairs[i].positives for r in rows] for i, _ in batch], dtype=torch.bool)
    return rows, relevant


def mean_dev_mrr(devs: Sequence[Split], backbone: Backbone, encode_documents: Callable[[Split], np.ndarray],
                 map_queries: Callable[[np.ndarray], np.ndarray] = lambda q: q) -> float:
    """The dev MRR@10 that selects epochs: the mean over corpora of the mean over each corpus's
    query kinds; logs each set. Corpora weigh alike, so the scenes' seven synthetic kinds do not
    outvote emoji's two natural ones (a plain mean over sets gave scenes 7/9 of the say).

    The dev sets of one corpus (one per query kind) share their documents, so each corpus's
    documents are encoded once per call, not once per kind.
    """
    encoded: dict[int, np.ndarray] = {}
    scores: dict[str, float] = {}
    by_corpus: dict[int, list[float]] = {}
    for dev in devs:
        if id(dev.features) not in encoded:
            encoded[id(dev.features)] = encode_documents(dev)
        scores[dev.name] = dev_mrr(dev, map_queries(dev.query_vectors(backbone)), encoded[id(dev.features)])
        by_corpus.setdefault(id(dev.features), []).append(scores[dev.name])
    log.info("dev MRR@10 %s", ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return float(np.mean([np.mean(kinds) for kinds in by_corpus.values()]))


def dev_mrr(dev: Split, query_vectors: np.ndarray, doc_vectors: np.ndarray, k: int = 10) -> float:
    """MRR@10 of the dev queries over ``dev.documents`` (exact search), by the evaluator that
    scores every run (ciea/evaluate.py), so ties are ordered as everywhere else."""
    ids = [d.doc_id for d in dev.documents]
    queries = [Query(str(i), p.query) for i, p in enumerate(dev.pairs)]
    qrels = {str(i): {ids[r]: 1 for r in p.positives} for i, p in enumerate(dev.pairs)}
    return Evaluator(queries, qrels, ["mrr@10"], k).score_matrix(query_vectors @ doc_vectors.T, ids)["all"]["mrr@10"]


def _setup(make_head: Callable[[], torch.nn.Module], config: TrainConfig, initial_state: dict | None
           ) -> tuple[torch.nn.Module, LogitScale, torch.optim.Optimizer, random.Random, torch.device]:
    """Seeds, then the head (seeded init, or ``initial_state`` when resuming), a learnable
    temperature and AdamW."""
    _seed_everything(config.seed)
    device = torch.device(config.device)
    head = make_head()
    if initial_state is not None:
        head.load_state_dict(initial_state)
    head, scale = head.to(device), LogitScale().to(device)
    optimizer = torch.optim.AdamW([*head.parameters(), *scale.parameters()], lr=config.lr,
                                  weight_decay=config.weight_decay)
    return head, scale, optimizer, random.Random(config.seed), device


# -- dual-encoder alignments ---------------------------------------------------------------
def train_alignment(name: str, backbone: Backbone, train: Split, devs: Sequence[Split], config: TrainConfig,
                    progress: bool = True, initial_state: dict | None = None
                    ) -> tuple[torch.nn.Module, dict, list[dict]]:
    """Train the linear image map of a dual encoder; returns the best module by dev MRR@10."""
    head, scale, optimizer, rng, device = _setup(lambda: TrainedAlignment.for_backbone(backbone), config,
                                                 initial_state)
    query_vecs = torch.as_tensor(train.query_vectors(backbone), device=device)
    text = torch.as_tensor(train.features.text, device=device)
    pooled = torch.as_tensor(train.features.image.pooled, device=device)
    has_image = torch.as_tensor(train.features.has_image, device=device)
    form = REGISTRY[name]  # the retriever class's query and document formulas (ciea/retrievers/dual.py)

    def full_documents(features: CorpusFeatures) -> torch.Tensor:
        """Documents as the index holds them (caption shown, no image side without an image)."""
        image = head(torch.as_tensor(features.image.pooled, device=device))
        image = image * torch.as_tensor(features.has_image, device=device)[:, None]
        return form.document_form(torch.as_tensor(features.text, device=device), image)

    def documents(dev: Split) -> np.ndarray:
        with torch.no_grad():
            return full_documents(dev.features).float().cpu().numpy()

    def queries(q: np.ndarray) -> np.ndarray:
        return np.asarray(form.query_form(q), dtype=np.float32)  # the form takes numpy as it is

    def dev_score() -> float:
        return mean_dev_mrr(devs, backbone, documents, queries)

    def mine() -> list[tuple[int, ...]]:
        with torch.no_grad():
            docs = full_documents(train.features).float().cpu().numpy()
        return mine_hard_negatives(train, queries(train.query_vectors(backbone)), docs, config.hard_negative_pool)

    def step(batch: list[tuple[int, int]], negatives: Sequence[int | None] | None = None) -> torch.Tensor:
        pair_idx = torch.tensor([i for i, _ in batch], device=device)
        rows = torch.tensor([r for _, r in batch], device=device)
        image_only = torch.tensor([train.pairs[i].image_only for i, _ in batch], device=device)
        caption = text[rows] * (~image_only)[:, None]
        image = head(pooled[rows])
        q = query_vecs[pair_idx]
        false_negatives = false_negative_mask(train.pairs, batch).to(device)
        hard = None
        mined = hard_negative_rows(train.pairs, batch, negatives)
        if mined:
            neg = torch.tensor(mined[0], device=device)
            neg_docs = form.document_form(text[neg], head(pooled[neg]) * has_image[neg][:, None])
            hard = HardNegatives(neg_docs, mined[1].to(device))
        if name == "dual-gcl":
            return gcl_loss(image, q, form.document_form(caption, image), scale(), false_negatives=false_negatives,
                            hard_negatives=hard)
        return info_nce(form.query_form(q), form.document_form(caption, image), scale(),
                        false_negatives=false_negatives, hard_negatives=hard)

    return _fit(name, head, scale, optimizer, step, dev_score, train, config, rng, progress, mine)


# -- CIEA ---------------------------------------------------------------------------------
def complementary_query_vectors(backbone: Backbone, queries: Sequence[str], captions: Sequence[str]
                                ) -> tuple[np.ndarray, np.ndarray]:
    """q_comp vectors (the query with every token of the positive caption deleted) and a flag
    saying whether anything but special tokens is left."""
    special = backbone.special_token_ids
    vectors = np.zeros((len(queries), backbone.text_dim), np.float32)
    valid = np.zeros(len(queries), bool)
    for s in range(0, len(queries), 256):
        q = backbone.embed_tokens(list(queries[s : s + 256]))
        c = backbone.embed_tokens(list(captions[s : s + 256]))
        kept = []
        for qi, qm, ci, cm in zip(q.input_ids, q.attention_mask, c.input_ids, c.attention_mask):
            ids = complementary_query_ids(qi[qm.bool()].tolist(), ci[cm.bool()].tolist(), special)
            kept.append(ids)
        length = max(len(k) for k in kept)
        ids = torch.zeros(len(kept), length, dtype=torch.long)
        mask = torch.zeros(len(kept), length, dtype=torch.long)
        for i, k in enumerate(kept):
            ids[i, : len(k)], mask[i, : len(k)] = torch.tensor(k), 1
            valid[s + i] = has_content(k, special)
        with torch.inference_mode():
            embeddings = backbone.embed_ids(ids)
            pooled = backbone.encode_token_embeddings(embeddings, mask.to(embeddings.device))
            vectors[s : s + len(kept)] = F.normalize(pooled, dim=-1).cpu().numpy()
    return vectors, valid


def encode_ciea_documents(backbone: Backbone, head: CIEAHead, patches, captions: Sequence[str],
                          caption_vectors: np.ndarray) -> np.ndarray:
    """Document vectors for image documents with a head under training (no gradients)."""
    return encode_in_batches(backbone, head, patches, captions, caption_vectors)[0]


def caption_alignment_loss(head: CIEAHead, patches: torch.Tensor, caption_vectors: torch.Tensor,
                           groups: Sequence[int]) -> torch.Tensor:
    """Trains the weight map A: each image must find its own caption among the batch's captions
    by its best-matching patch (max over patches); identical captions are not negatives."""
    logits = ALIGN_SCALE * head.alignment_logits(patches, caption_vectors)
    g = torch.as_tensor(list(groups), device=logits.device)
    same = (g[:, None] == g[None, :]) & ~torch.eye(len(g), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(g), device=logits.device))


def train_ciea(backbone: Backbone, train: Split, devs: Sequence[Split], config: TrainConfig, progress: bool = True,
               initial_state: dict | None = None) -> tuple[torch.nn.Module, dict, list[dict]]:
    """Train CIEA's head through the frozen language model: L_c + lambda L_comp + the weight map's
    alignment loss."""
    head_config = CIEAConfig.for_backbone(backbone, use_weights=config.use_weights, **config.ciea)
    for tower in (getattr(backbone, "text_model", None), getattr(backbone, "model", None)):
        for p in tower.parameters() if tower is not None else ():
            p.requires_grad_(False)  # frozen language model: gradients reach the head only
    reader = backbone  # what documents are read with: a private adapted copy with adapter_rank

    def make_head() -> CIEAHead:
        nonlocal reader
        head = CIEAHead(head_config)
        reader = head.attach_adapter(backbone)  # before _setup loads a resumed state into the adapter
        return head

    head, scale, optimizer, rng, device = _setup(make_head, config, initial_state)
    queries = [p.query for p in train.pairs]
    query_vecs = torch.as_tensor(train.query_vectors(backbone), device=device)
    captions = [train.documents[p.positives[0]].text for p in train.pairs]
    comp_vecs, comp_valid = complementary_query_vectors(backbone, queries, captions)
    comp_vecs, comp_valid = torch.as_tensor(comp_vecs, device=device), torch.as_tensor(comp_valid, device=device)
    log.info("CIEA: %d of %d training queries have a non-empty q_comp", int(comp_valid.sum()), len(queries))
    caption_vecs = torch.as_tensor(train.features.text, device=device)
    groups = caption_groups(train.documents)

    def documents(dev: Split) -> np.ndarray:
        return encode_ciea_documents(reader, head, dev.features.image.patches, [d.text for d in dev.documents],
                                     dev.features.text)

    def dev_score() -> float:
        head.eval()
        score = mean_dev_mrr(devs, backbone, documents)
        head.train()
        return score

    def mine() -> list[tuple[int, ...]]:
        return mine_hard_negatives(train, train.query_vectors(backbone), documents(train), config.hard_negative_pool)

    def step(batch: list[tuple[int, int]], negatives: Sequence[int | None] | None = None) -> torch.Tensor:
        pair_idx = torch.tensor([i for i, _ in batch], device=device)
        rows = [r for _, r in batch]
        image_only = torch.tensor([train.pairs[i].image_only for i, _ in batch], device=device)
        shown = ["" if io else train.documents[r].text for io, r in zip(image_only.tolist(), rows)]
        patches = torch.as_tensor(train.features.image.patches[rows], dtype=torch.float32, device=device)
        t = caption_vecs[rows]
        documents, _ = encode_documents_with(reader, head, patches, shown, t)
        comp_rows = comp_valid[pair_idx] & ~image_only
        if bool(comp_rows.any()):
            image_sides, _ = encode_documents_with(reader, head, patches, shown, t, with_caption=False)
        else:
            image_sides = documents
        hard = None
        mined = hard_negative_rows(train.pairs, batch, negatives)
        if mined:
            neg = mined[0]
            neg_patches = torch.as_tensor(train.features.image.patches[neg], dtype=torch.float32, device=device)
            neg_docs, _ = encode_documents_with(reader, head, neg_patches, [train.documents[r].text for r in neg],
                                                caption_vecs[neg])
            hard = HardNegatives(neg_docs, mined[1].to(device))
        out = ciea_loss(query_vecs[pair_idx], documents, comp_vecs[pair_idx], image_sides, scale(),
                        comp_rows=comp_rows, image_columns=torch.ones(len(batch), dtype=torch.bool, device=device),
                        lam=config.lam, false_negatives=false_negative_mask(train.pairs, batch).to(device),
                        hard_negatives=hard)
        align = caption_alignment_loss(head, patches, t, [groups[r] for r in rows])
        return out.total + config.align_weight * align

    head_dict = asdict(head_config)
    module, extra, history = _fit("ciea", head, scale, optimizer, step, dev_score, train, config, rng, progress, mine)
    return module, {**extra, "head": head_dict, "gain": float(module.gain.detach())}, history


# -- shared loop ---------------------------------------------------------------------------
def _fit(name: str, head: torch.nn.Module, scale: LogitScale, optimizer: torch.optim.Optimizer,
         step: Callable[..., torch.Tensor], dev_score: Callable[[], float], train: Split,
         config: TrainConfig, rng: random.Random, progress: bool,
         mine: Callable[[], list[tuple[int, ...]]] | None = None) -> tuple[torch.nn.Module, dict, list[dict]]:
    """Epochs with dev-set early stopping, then the optional hard-negative stage from the best
    head; returns the best head, facts to save, and history. ``max_minutes`` bounds stage 1."""
    device_type = "cuda" if config.device.startswith("cuda") else "cpu"
    use_bf16 = config.bf16 and bf16_available(config.device)

    def autocast() -> torch.autocast:
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16)

    with autocast():
        best = dev_score()
    best_epoch, history = 0, [{"epoch": 0, "dev_mrr10": best, "loss": None, "seconds": 0.0}]
    log.info("%s: epoch 0 dev MRR@10 %.4f", name, best)
    best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    row_groups = caption_groups(train.documents)
    stages = [(1, config.epochs)] + ([(2, config.hard_negative_epochs)] if config.hard_negative_epochs and mine else [])
    epoch, started = 0, time.perf_counter()
    try:
        for stage, stage_epochs in stages:
            pool = None
            if stage == 2:
                head.load_state_dict(best_state)
                head.eval()
                t0 = time.perf_counter()
                with autocast():
                    pool = mine()
                log.info("%s: mined hard negatives for %d queries (%.0fs)", name, sum(map(bool, pool)),
                         time.perf_counter() - t0)
            stale = 0
            for _ in range(stage_epochs):
                epoch += 1
                t0 = time.perf_counter()
                head.train()
                losses = []
                batches = _epoch_batches(train.pairs, config, rng, row_groups)
                for batch in tqdm(batches, desc=f"{name} stage {stage} epoch {epoch}", unit="batch",
                                  disable=not progress, leave=False):
                    negatives = None if pool is None else [rng.choice(pool[i]) if pool[i] else None for i, _ in batch]
                    with autocast():
                        loss = step(batch, negatives).float()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scale.clamp_()
                    losses.append(float(loss.detach()))
                head.eval()
                with autocast():
                    score = dev_score()
                seconds = time.perf_counter() - t0
                history.append({"epoch": epoch, "stage": stage, "dev_mrr10": score, "loss": float(np.mean(losses)),
                                "seconds": round(seconds, 1), "temperature": scale.temperature, "bf16": use_bf16})
                log.info("%s: stage %d epoch %d loss %.4f dev MRR@10 %.4f (%.0fs)", name, stage, epoch,
                         np.mean(losses), score, seconds)
                if score > best:
                    best, best_epoch, stale = score, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
                else:
                    stale += 1
                    if stale >= config.patience:
                        break
                # The budget is a bound: stop when another epoch like this one would pass it.
                if (stage == 1 and config.max_minutes is not None
                        and time.perf_counter() - started + seconds > 60 * config.max_minutes):
                    log.info("%s: another epoch would pass the %.0f-min budget; stopping after epoch %d", name,
                             config.max_minutes, epoch)
                    break
    except KeyboardInterrupt:  # Ctrl-C keeps the best epoch so far instead of losing the run
        log.warning("%s: interrupted; keeping the best epoch so far (%d)", name, best_epoch)
    head.load_state_dict(best_state)
    return head.eval(), {"best_epoch": best_epoch, "dev_mrr10": best}, history


def train_retriever(name: str, settings: Settings, config: TrainConfig | None = None, progress: bool = True,
                    data: tuple[Split, Split] | None = None, corpora: Sequence[str] = DEFAULT_CORPORA
                    ) -> TrainResult:
    """Train retriever ``name`` on the settings' backbone and write its checkpoint."""
    config = config or default_config(name)
    backbone = load_backbone(settings.backbone, device=config.device)
    train, devs = data or load_training_data(backbone, settings, corpora, progress=progress)
    stem = settings.checkpoint_stem(backbone.spec, name)
    previous = load_checkpoint(stem) if config.resume else None
    initial = previous.state if previous else None
    start = time.perf_counter()
    if name == "ciea":
        head, extra, history = train_ciea(backbone, train, devs, config, progress, initial)
    elif issubclass(REGISTRY.get(name, object), DualEncoderRetriever):
        head, extra, history = train_alignment(name, backbone, train, devs, config, progress, initial)
    else:
        raise ValueError(f"{name} has nothing to train; trainable: {', '.join(TRAINABLE)}")
    seconds = time.perf_counter() - start
    if previous:  # a resumed run keeps the earlier runs' history and time
        extra["resumed_from"] = previous.sha256
        history = [*previous.config.get("history", []), *history]
        seconds += float(previous.config.get("seconds", 0.0))
    meta = {"retriever": name, "backbone": backbone.spec, "train_config": asdict(config),
            "data": {"train_pairs": len(train.pairs), "train_documents": len(train.documents),
                     "dev": {dev.name: {"queries": len(dev.pairs), "documents": len(dev.documents)} for dev in devs},
                     "corpora": list(corpora)},
            "history": history, "seconds": round(seconds, 1), **extra}
    checkpoint = save_checkpoint(stem, head.cpu(), json.loads(json.dumps(meta)))
    return TrainResult(name, checkpoint, extra["best_epoch"], extra["dev_mrr10"], history, seconds)

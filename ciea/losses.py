"""Training losses: in-batch InfoNCE, CIEA's L_c + lambda * L_comp, and GCL.

Pure PyTorch and leaf-level (imports nothing from ``ciea``). Every embedding argument is an
L2-normalised float tensor, so ``a @ b.T`` is a cosine similarity; ``logit_scale`` (a float or
a scalar tensor, e.g. the output of :class:`LogitScale`) is 1 / temperature and multiplies
those similarities before the softmax. Masked candidates get a logit of -inf, which removes
them from the softmax denominator exactly (they contribute neither value nor gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

LogitScaleLike = torch.Tensor | float

DEFAULT_LAMBDA = 0.1          # weight of L_comp in CIEA's objective (docs/method.md)
INIT_TEMPERATURE = 0.01       # CLIP's and CIEA's initial temperature (logit scale 100)
MAX_LOGIT_SCALE = 100.0       # CLIP's cap on the logit scale


def masked_info_nce(queries: torch.Tensor, candidates: torch.Tensor, logit_scale: LogitScaleLike,
                    targets: torch.Tensor, candidate_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean one-directional cross-entropy of ``queries`` (B, D) over ``candidates`` (C, D).

    Row i's positive is column ``targets[i]``; ``candidate_mask`` (B, C) bool marks the
    candidates each row may see (False -> logit -inf, i.e. not a negative). The target of a
    row must stay allowed, otherwise the row's loss would be infinite, so that is refused.
    The one place that turns similarities into a contrastive loss; the others call it.
    """
    _check_2d(queries, "queries")
    _check_2d(candidates, "candidates")
    if queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"queries {tuple(queries.shape)} and candidates {tuple(candidates.shape)} "
                         "have different widths")
    targets = torch.as_tensor(targets, dtype=torch.long, device=queries.device)
    if targets.shape != (queries.shape[0],):
        raise ValueError(f"targets must have shape ({queries.shape[0]},), got {tuple(targets.shape)}")
    if targets.numel() and (targets.min() < 0 or targets.max() >= candidates.shape[0]):
        raise ValueError(f"targets must index the {candidates.shape[0]} candidates")
    logits = logit_scale * (queries @ candidates.T)
    if candidate_mask is not None:
        mask = _bool_mask(candidate_mask, logits.shape, "candidate_mask", logits.device)
        rows = torch.arange(targets.numel(), device=logits.device)
        if not bool(mask[rows, targets].all()):
            raise ValueError("candidate_mask hides the target of at least one row")
        logits = logits.masked_fill(~mask, float("-inf"))
    return F.cross_entropy(logits, targets)


@dataclass
class HardNegatives:
    """Mined negative documents (H, D) added to a batch's candidates, with ``relevant`` (B, H)
    bool True where negative h is in fact relevant to query i (then it is not a negative)."""

    documents: torch.Tensor
    relevant: torch.Tensor

    def extend(self, candidates: torch.Tensor, allowed: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``candidates`` (C, D) with the negatives appended, and the (B, C + H) allowed mask."""
        _check_2d(self.documents, "hard negatives")
        batch = self.relevant.shape[0]
        relevant = _bool_mask(self.relevant, (batch, self.documents.shape[0]), "relevant", candidates.device)
        if allowed is None:
            allowed = torch.ones(batch, candidates.shape[0], dtype=torch.bool, device=candidates.device)
        return torch.cat([candidates, self.documents]), torch.cat([allowed, ~relevant], dim=1)


def info_nce(queries: torch.Tensor, documents: torch.Tensor, logit_scale: LogitScaleLike, *,
             false_negatives: torch.Tensor | None = None, symmetric: bool = True,
             hard_negatives: HardNegatives | None = None) -> torch.Tensor:
    """In-batch InfoNCE: query i's positive is document i, the other documents are negatives.

    ``false_negatives`` (B, B) bool is True where document j (j != i) is also relevant to
    query i; those pairs leave the softmax denominators of both directions (the transpose
    for document -> query). Masking the diagonal is refused: it would hide the positive.
    ``symmetric`` returns the mean of the query -> document and document -> query losses;
    otherwise only query -> document. ``hard_negatives`` (mined documents, training's second
    stage) join every query's candidates in the query -> document direction only.
    """
    _check_2d(queries, "queries")
    _check_2d(documents, "documents")
    if queries.shape != documents.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and documents {tuple(documents.shape)} "
                         "must pair up row by row")
    batch = queries.shape[0]
    targets = torch.arange(batch, device=queries.device)
    allowed = None
    if false_negatives is not None:
        fn = _bool_mask(false_negatives, (batch, batch), "false_negatives", queries.device)
        if bool(fn.diagonal().any()):
            raise ValueError("false_negatives marks a diagonal (positive) pair")
        allowed = ~fn
    candidates, candidate_mask = documents, allowed
    if hard_negatives is not None:
        candidates, candidate_mask = hard_negatives.extend(documents, allowed)
    forward = masked_info_nce(queries, candidates, logit_scale, targets, candidate_mask)
    if not symmetric:
        return forward
    backward = masked_info_nce(documents, queries, logit_scale, targets,
                               None if allowed is None else allowed.T)
    return (forward + backward) / 2


@dataclass
class CIEALossOutput:
    """CIEA's objective and its two parts (total = contrastive + lambda * complementary)."""

    total: torch.Tensor
    contrastive: torch.Tensor
    complementary: torch.Tensor


def ciea_loss(queries: torch.Tensor, documents: torch.Tensor, comp_queries: torch.Tensor,
              image_sides: torch.Tensor, logit_scale: LogitScaleLike, *, comp_rows: torch.Tensor,
              image_columns: torch.Tensor, lam: float = DEFAULT_LAMBDA,
              false_negatives: torch.Tensor | None = None,
              hard_negatives: HardNegatives | None = None) -> CIEALossOutput:
    """CIEA's L = L_c + lam * L_comp (docs/method.md), all tensors (B, D) except the masks.

    L_c: one-directional in-batch InfoNCE of ``queries`` against ``documents``.
    L_comp: for the rows where ``comp_rows`` (B,) is True (positive is an image document and
    q_comp is non-empty), ``comp_queries[i]`` against ``image_sides`` (the image-only
    encoding of each batch document), target column i, candidates restricted to the columns
    where ``image_columns`` (B,) is True; ``false_negatives`` applies there too. Columns
    and rows that do not take part are dropped before the similarity, so whatever the caller
    put in them (zeros, NaN from normalising an empty q_comp) never reaches the loss or its
    gradient. With no qualifying row L_comp is an exact zero that still belongs to the graph.
    ``hard_negatives`` join L_c's candidates (training's second stage).
    """
    batch = queries.shape[0]
    device = queries.device
    for name, tensor in (("documents", documents), ("comp_queries", comp_queries),
                         ("image_sides", image_sides)):
        if tensor.shape != queries.shape:
            raise ValueError(f"{name} {tuple(tensor.shape)} must match queries {tuple(queries.shape)}")
    rows_mask = _bool_mask(comp_rows, (batch,), "comp_rows", device)
    columns_mask = _bool_mask(image_columns, (batch,), "image_columns", device)
    if bool((rows_mask & ~columns_mask).any()):
        raise ValueError("comp_rows selects a row whose positive document has no image")

    contrastive = info_nce(queries, documents, logit_scale, false_negatives=false_negatives,
                           symmetric=False, hard_negatives=hard_negatives)
    rows = rows_mask.nonzero().squeeze(1)
    if rows.numel() == 0:
        complementary = comp_queries[rows].sum() * 0.0  # empty selection: 0, no NaN, in the graph
    else:
        columns = columns_mask.nonzero().squeeze(1)
        column_of = torch.cumsum(columns_mask.long(), 0) - 1   # batch index -> kept column
        allowed = None
        if false_negatives is not None:
            fn = _bool_mask(false_negatives, (batch, batch), "false_negatives", device)
            allowed = ~fn[rows][:, columns]
        complementary = masked_info_nce(comp_queries[rows], image_sides[columns], logit_scale,
                                        column_of[rows], allowed)
    return CIEALossOutput(total=contrastive + lam * complementary, contrastive=contrastive,
                          complementary=complementary)


def complementary_query_ids(query_ids: Sequence[int], caption_ids: Iterable[int],
                            special_ids: Iterable[int]) -> list[int]:
    """q_comp: the query's token ids minus every id that occurs in the positive's caption.

    Special ids ([CLS], [SEP], padding: callers pass them all) stay in place and in order
    even when the caption has them too; every occurrence of a shared id is removed.
    """
    specials = set(special_ids)
    shared = set(caption_ids) - specials
    return [int(t) for t in query_ids if t not in shared]


def has_content(ids: Iterable[int], special_ids: Iterable[int]) -> bool:
    """Whether anything besides special ids is left (an empty q_comp gives no L_comp row)."""
    specials = set(special_ids)
    return any(t not in specials for t in ids)


def gcl_loss(image: torch.Tensor, text: torch.Tensor, fused: torch.Tensor,
             logit_scale: LogitScaleLike, *, false_negatives: torch.Tensor | None = None,
             hard_negatives: HardNegatives | None = None) -> torch.Tensor:
    """Generalized Contrastive Learning (Lee et al., NeurIPS 2025), as docs/method.md describes it.

    Pair k gives ``image[k]``, ``text[k]``, ``fused[k]`` (each (N, D)); all 3N embeddings are
    the candidates. Each anchor (modality m, pair k) has two positives, the other two
    modalities of pair k, and each (anchor, positive) is its own InfoNCE term: cross-entropy
    over the 3N candidates with the anchor itself masked (self similarity is never a logit)
    and the anchor's *other* positive masked too, since it is not a negative; everything else
    is a negative, same-modality embeddings of other pairs included. Six directions x N
    anchors; the result is the mean of those 6N terms. ``false_negatives`` (N, N) bool, True
    where pair j's document is also relevant to pair i, drops all three of pair j's
    embeddings from anchor i's negatives. ``hard_negatives`` (mined fused documents, training's
    second stage) are further negatives of every anchor.
    """
    if not (image.shape == text.shape == fused.shape):
        raise ValueError(f"image {tuple(image.shape)}, text {tuple(text.shape)} and fused "
                         f"{tuple(fused.shape)} must have the same shape")
    _check_2d(image, "image")
    n = image.shape[0]
    candidates = torch.cat([image, text, fused])
    pairs = torch.arange(n, device=image.device)
    kept = torch.ones(n, 3 * n, dtype=torch.bool, device=image.device)
    if false_negatives is not None:
        fn = _bool_mask(false_negatives, (n, n), "false_negatives", image.device)
        if bool(fn.diagonal().any()):
            raise ValueError("false_negatives marks a diagonal (positive) pair")
        kept = ~fn.repeat(1, 3)
    if hard_negatives is not None:
        candidates, kept = hard_negatives.extend(candidates, kept)
    terms = []
    for anchor in range(3):
        for positive in range(3):
            if positive == anchor:
                continue
            other = 3 - anchor - positive
            allowed = kept.clone()
            allowed[pairs, anchor * n + pairs] = False
            allowed[pairs, other * n + pairs] = False
            terms.append(masked_info_nce(candidates[anchor * n:(anchor + 1) * n], candidates,
                                         logit_scale, positive * n + pairs, allowed))
    return torch.stack(terms).mean()  # equal N per direction, so this is the mean of 6N terms


class LogitScale(torch.nn.Module):
    """Learnable 1 / temperature, stored as a log so it stays positive; capped like CLIP's.

    ``forward()`` returns exp(param) clamped to at most ``max_scale``. The cap is stored as
    the largest float32 log whose exp does not exceed it, so starting at the cap (the default:
    temperature 0.01, scale 100) still passes gradients. Call :meth:`clamp_` after each
    optimiser step (as open_clip does) so the parameter never sits above the cap, where the
    clamp would stop its gradient for good.
    """

    def __init__(self, init_temperature: float = INIT_TEMPERATURE,
                 max_scale: float = MAX_LOGIT_SCALE) -> None:
        super().__init__()
        if not init_temperature > 0 or not max_scale > 0:
            raise ValueError("init_temperature and max_scale must be positive")
        if 1.0 / init_temperature > max_scale * (1 + 1e-6):
            raise ValueError(f"1 / init_temperature = {1.0 / init_temperature} exceeds the cap {max_scale}")
        self.max_scale = float(max_scale)
        self.max_log = _largest_log_within(self.max_scale)
        start = min(math.log(1.0 / init_temperature), self.max_log)
        self.log_scale = torch.nn.Parameter(torch.tensor(start, dtype=torch.float32))

    def forward(self) -> torch.Tensor:
        """The current logit scale (a scalar tensor in the graph)."""
        return self.log_scale.exp().clamp(max=self.max_scale)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Pull the parameter back under the cap in place (call after ``optimizer.step()``)."""
        self.log_scale.clamp_(max=self.max_log)

    @property
    def temperature(self) -> float:
        """1 / the current logit scale, for logging."""
        return 1.0 / float(self.forward().detach())


def _largest_log_within(cap: float) -> float:
    """The largest float32 x with float32 exp(x) <= cap (float32 log(100) overshoots it)."""
    x = torch.tensor(math.log(cap), dtype=torch.float32)
    down = torch.tensor(float("-inf"))
    while float(x.exp()) > cap:
        x = torch.nextafter(x, down)
    return float(x)


def _check_2d(tensor: torch.Tensor, name: str) -> None:
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {tuple(tensor.shape)}")


def _bool_mask(mask: torch.Tensor, shape: Sequence[int], name: str, device: torch.device) -> torch.Tensor:
    mask = torch.as_tensor(mask, device=device)
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    return mask

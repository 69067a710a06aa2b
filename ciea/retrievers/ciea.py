"""CIEA: Complementary Information Extraction and Alignment (Zeng et al., ACL 2025).

A caption says only part of what an image shows. CIEA writes the image into the language
model's input space and lets the model read it next to the caption:

1. frozen patch features P (B x N x Dv) -> trainable linear projector -> LayerNorm at the
   word-embedding scale -> P' (B x N x D), so patches neither swamp the caption tokens nor the
   position embeddings (raw projections were about 40x the norm of a word embedding);
2. complementarity weight per patch, w_i = 1 - (cos(A p_i, t) + 1) / 2, where A is a
   per-patch linear map into the sentence space trained to find the caption in the image
   (max over patches, contrastive) and t the caption's sentence vector: high w = the caption
   does not cover that patch. (The paper compares P' with caption *word* embeddings; in our
   small frozen model that gave w of about 0.5 everywhere, so the comparison is made where
   captions and patches are comparable: our extension.)
3. one transformer layer over the patches whose attention logits are multiplied by the key
   patch's w ** 2, so caption-redundant patches lose their pull (the extractor) -> P^;
4. the frozen language model reads [start ; <img> ; P^ ; </img> ; "caption:" ; caption ; end]
   (learned delimiters and a prompt, as in the reference code), and a learned attention pool
   (one query vector, the analogue of the reference's first-decoder-position pooling) gives z;
5. the document vector is anchored on its caption: normalise(t + g * z) with a learned gain g
   (our extension: a mean over 49 patch tokens otherwise drowns a short caption).
Queries and text-only documents are the language model's plain sentence vectors. An optional
LoRA adapter tunes the language model where it reads documents (ciea/retrievers/adapter.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ciea.backbones import Backbone, ImageFeatures, l2_normalize
from ciea.checkpoints import Checkpoint, CheckpointError, load_checkpoint
from ciea.config import Settings
from ciea.data.schema import Corpus
from ciea.features import CorpusFeatures
from ciea.retrievers.base import Retriever

ENCODE_BATCH = 32
#: Version of the head's architecture; checkpoints of another version are refused.
HEAD_FORMAT = 2
CAPTION_PROMPT = "caption:"
#: Logit scale of the patch-caption alignment loss that trains the weight map A.
ALIGN_SCALE = 20.0


@dataclass(frozen=True)
class CIEAConfig:
    """Shape and ablation switches of the CIEA head (saved with every checkpoint)."""

    patch_dim: int
    token_dim: int
    num_patches: int
    text_dim: int = 0  # width of sentence vectors (0: same as token_dim)
    heads: int = 4
    ffn_mult: int = 2
    weight_power: float = 2.0  # attention logits x w_key ** weight_power (the reference squares)
    use_weights: bool = True  # False = plain attention (ablation)
    dropout: float = 0.1
    word_norm: float = 1.0  # mean norm of the language model's word embeddings (patch scale)
    patch_grid: int = 0  # pool the patch grid to patch_grid x patch_grid tokens (0: keep all)
    anchor: bool = True  # document = normalise(t + g z) instead of z
    attention_pool: bool = True  # learned pooling of the language model's outputs instead of the mean
    delimiters: bool = True  # learned <img> </img> tokens and the "caption:" prompt
    comp_view: str = "projected"  # L_comp image view: "projected" (reference) or "extracted"
    init_gain: float = 0.5
    adapter_rank: int = 0  # LoRA rank on the language model that reads documents (0: frozen; ciea/retrievers/adapter.py)
    format: int = HEAD_FORMAT

    @classmethod
    def for_backbone(cls, backbone: Backbone, **overrides) -> "CIEAConfig":
        with torch.no_grad():
            table = backbone.embed_ids(torch.arange(min(30000, _vocab_size(backbone))))
            word_norm = float(table.float().norm(dim=-1).mean())
        return cls(patch_dim=backbone.patch_dim, token_dim=backbone.token_dim, num_patches=backbone.num_patches,
                   text_dim=backbone.text_dim, word_norm=round(word_norm, 4), **overrides)

    @classmethod
    def from_dict(cls, data: dict) -> "CIEAConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def tokens(self) -> int:
        """Patch tokens the language model reads."""
        return self.patch_grid ** 2 if self.patch_grid else self.num_patches


def _vocab_size(backbone: Backbone) -> int:
    model = getattr(backbone, "text_model", None) or getattr(backbone, "model", None)
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else model.token_embedding
    return int(emb.num_embeddings)


def complementarity_weights(aligned: torch.Tensor, caption_vectors: torch.Tensor, has_caption: torch.Tensor
                            ) -> torch.Tensor:
    """w (B, N) = 1 - (cos(aligned patch, caption sentence vector) + 1) / 2, in [0, 1].

    aligned (B, N, T) patches mapped into the sentence space; caption_vectors (B, T);
    has_caption (B,) bool. A document without a caption gets w = 1: nothing in it is covered.
    """
    cos = torch.einsum("bnt,bt->bn", F.normalize(aligned, dim=-1), F.normalize(caption_vectors, dim=-1))
    weights = 1 - (cos + 1) / 2
    return torch.where(has_caption[:, None], weights, torch.ones_like(weights))


class ComplementaryExtractor(nn.Module):
    """One pre-norm transformer layer over patches; attention logits scaled by w_key ** power."""

    def __init__(self, config: CIEAConfig) -> None:
        super().__init__()
        dim = config.token_dim
        if dim % config.heads:
            raise ValueError(f"token_dim {dim} is not divisible by {config.heads} heads")
        self.heads, self.power, self.use_weights = config.heads, config.weight_power, config.use_weights
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, config.ffn_mult * dim), nn.GELU(), nn.Linear(config.ffn_mult * dim, dim))
        self.dropout = nn.Dropout(config.dropout)
        self.out_scale = config.word_norm / math.sqrt(dim)  # residual updates at the patches' scale

    def forward(self, patches: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        b, n, d = patches.shape
        q, k, v = self.qkv(self.norm1(patches)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)  # (B, H, N, N)
        if self.use_weights:
            logits = logits * weights[:, None, None, :].pow(self.power)
        mixed = (self.dropout(logits.softmax(dim=-1)) @ v).transpose(1, 2).reshape(b, n, d)
        x = patches + self.out_scale * self.dropout(self.out(mixed))
        return x + self.out_scale * self.dropout(self.ffn(self.norm2(x)))


class CIEAHead(nn.Module):
    """The trainable part of CIEA: projector, weight map, extractor, delimiters, pooling, gain."""

    def __init__(self, config: CIEAConfig) -> None:
        super().__init__()
        self.config = config
        dim, text_dim = config.token_dim, config.text_dim or config.token_dim
        self.projector = nn.Linear(config.patch_dim, dim)
        self.patch_norm = nn.LayerNorm(dim)
        with torch.no_grad():  # LayerNorm output has norm sqrt(dim); start at a word embedding's norm
            self.patch_norm.weight.fill_(config.word_norm / math.sqrt(dim))
        self.aligner = nn.Linear(config.patch_dim, text_dim)
        self.extractor = ComplementaryExtractor(config)
        self.delimiter_tokens = nn.Parameter(torch.randn(2, dim) * config.word_norm / math.sqrt(dim))
        self.pool_query = nn.Parameter(torch.zeros(text_dim))  # zeros = the mean to start with
        self.log_gain = nn.Parameter(torch.tensor(math.log(config.init_gain)))

    def attach_adapter(self, backbone: Backbone) -> Backbone:
        """The backbone this head reads documents with: with ``adapter_rank``, a view whose private
        language model carries the LoRA adapter, its weights registered here as ``adapter`` (call
        before loading a state); else ``backbone`` itself."""
        if not self.config.adapter_rank:
            return backbone
        from ciea.retrievers.adapter import attach_lora

        reader, self.adapter = attach_lora(backbone, self.config.adapter_rank)
        return reader

    def grid(self, patches: torch.Tensor) -> torch.Tensor:
        """Patches pooled to ``patch_grid`` x ``patch_grid`` when configured (fewer LM tokens)."""
        g = self.config.patch_grid
        side = int(round(math.sqrt(patches.shape[1])))
        if not g or g == side or side * side != patches.shape[1]:
            return patches
        b, n, d = patches.shape
        image = patches.transpose(1, 2).reshape(b, d, side, side)
        return F.adaptive_avg_pool2d(image, g).reshape(b, d, g * g).transpose(1, 2)

    def project(self, patches: torch.Tensor) -> torch.Tensor:
        return self.patch_norm(self.projector(patches))

    def weights(self, patches: torch.Tensor, caption_vectors: torch.Tensor, has_caption: torch.Tensor) -> torch.Tensor:
        return complementarity_weights(self.aligner(patches), caption_vectors, has_caption)

    def forward(self, patches: torch.Tensor, caption_vectors: torch.Tensor, has_caption: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Extracted patches P^ (B, n, D), complementarity weights w (B, n), projected P' (B, n, D)."""
        patches = self.grid(patches)
        projected = self.project(patches)
        weights = self.weights(patches, caption_vectors, has_caption)
        return self.extractor(projected, weights), weights, projected

    def alignment_logits(self, patches: torch.Tensor, caption_vectors: torch.Tensor) -> torch.Tensor:
        """(B, C) max over each image's patches of cos(A p, caption c): trains the weight map."""
        aligned = F.normalize(self.aligner(self.grid(patches)), dim=-1)
        return torch.einsum("bnt,ct->bnc", aligned, F.normalize(caption_vectors, dim=-1)).amax(dim=1)

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention pooling of the language model's outputs (B, L, T) over real positions."""
        if not self.config.attention_pool:
            m = mask.unsqueeze(-1).to(states.dtype)
            return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
        logits = states @ self.pool_query.to(states.dtype) / math.sqrt(states.shape[-1])
        logits = logits.masked_fill(~mask.bool(), float("-inf"))
        return torch.einsum("bl,blt->bt", logits.softmax(dim=1), states)

    @property
    def gain(self) -> torch.Tensor:
        return self.log_gain.exp()

    def document(self, caption_vectors: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The document vector: normalise(t + g * normalise(z)), or normalise(z) unanchored.

        The one formula used by training and indexing; t is zero for documents shown without
        a caption (then the vector is z's direction).
        """
        z = F.normalize(z, dim=-1)
        if not self.config.anchor:
            return z
        return F.normalize(caption_vectors.to(z.dtype) + self.gain.to(z.dtype) * z, dim=-1)


@dataclass
class CaptionTokens:
    """Caption input embeddings split around the start token, ready to splice patches in."""

    start: torch.Tensor  # (B, 1, D)
    rest: torch.Tensor  # (B, L, D): caption tokens, end token, padding
    rest_mask: torch.Tensor  # (B, L)
    content_mask: torch.Tensor  # (B, L) real caption words only


def caption_tokens(backbone: Backbone, captions: Sequence[str]) -> CaptionTokens:
    """Tokenise captions once; tensors are ordinary (not inference-mode) so autograd can use them."""
    emb = backbone.embed_tokens(list(captions))
    length = int(emb.attention_mask.sum(1).max())
    ids, mask = emb.input_ids[:, :length].clone(), emb.attention_mask[:, :length].clone()
    embeddings = emb.embeddings[:, :length].clone().float()
    special = torch.tensor(sorted(backbone.special_token_ids), device=ids.device)
    content = mask.bool() & ~torch.isin(ids, special)
    return CaptionTokens(embeddings[:, :1], embeddings[:, 1:], mask[:, 1:], content[:, 1:].float())


def prompt_embeddings(backbone: Backbone, text: str = CAPTION_PROMPT) -> torch.Tensor:
    """Input embeddings (P, D) of the prompt's content tokens (no start or end token)."""
    tokens = caption_tokens(backbone, [text])
    return tokens.rest[0][tokens.content_mask[0].bool()]


def encode_sequence(backbone: Backbone, head: CIEAHead, patch_tokens: torch.Tensor, caption: CaptionTokens,
                    with_caption: bool = True) -> torch.Tensor:
    """Pooled language-model vectors z (B, T) of [start ; <img> ; patches ; </img> ; caption: ; caption ; end],
    or of [start ; <img> ; patches ; </img> ; end] without the caption. Not normalised."""
    b = patch_tokens.shape[0]
    device, dtype = patch_tokens.device, patch_tokens.dtype
    if with_caption:
        rest, rest_mask = caption.rest, caption.rest_mask
    else:  # keep only the end token: the first non-content real token after the caption words
        end = (caption.rest_mask.bool() & ~caption.content_mask.bool()).float().argmax(dim=1)
        rest = caption.rest[torch.arange(b), end][:, None]
        rest_mask = torch.ones(b, 1, dtype=caption.rest_mask.dtype, device=device)
    parts = [caption.start.to(dtype)]
    if head.config.delimiters:
        open_, close = head.delimiter_tokens.to(dtype)[:, None, :].unbind(0)
        parts += [open_.expand(b, 1, -1), patch_tokens, close.expand(b, 1, -1)]
        if with_caption:
            prompt = prompt_embeddings(backbone).to(device, dtype)
            parts.append(prompt[None].expand(b, -1, -1))
    else:
        parts.append(patch_tokens)
    prefix = torch.cat(parts, dim=1)
    sequence = torch.cat([prefix, rest.to(dtype)], dim=1)
    mask = torch.cat([torch.ones(b, prefix.shape[1], dtype=rest_mask.dtype, device=device), rest_mask], dim=1)
    limit = backbone.max_sequence_length
    if sequence.shape[1] > limit:
        sequence, mask = sequence[:, :limit], mask[:, :limit]
    return head.pool(backbone.encode_token_states(sequence, mask), mask)


def encode_documents_with(backbone: Backbone, head: CIEAHead, patches: torch.Tensor, captions: Sequence[str],
                          caption_vectors: torch.Tensor, with_caption: bool = True
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Document vectors (B, T) and weights (B, n) of image documents: the one path shared by
    training and indexing. Without the caption (image queries, the L_comp view) t is zero and
    the patches are read as ``comp_view`` says.

    ``captions`` empty strings mean "shown without a caption".
    """
    tokens = caption_tokens(backbone, captions)
    has_caption = torch.tensor([bool(c.strip()) for c in captions], device=patches.device) & with_caption
    t = caption_vectors * has_caption[:, None].to(caption_vectors.dtype)
    extracted, weights, projected = head(patches, t, has_caption)
    if not with_caption and head.config.comp_view == "projected":
        extracted = projected  # the reference's image view: projector output straight into the LM
    z = encode_sequence(backbone, head, extracted, tokens, with_caption=with_caption)
    return head.document(t, z), weights


@torch.inference_mode()
def encode_in_batches(backbone: Backbone, head: CIEAHead, patches, captions: Sequence[str],
                      caption_vectors: np.ndarray, with_caption: bool = True, batch_size: int = ENCODE_BATCH
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``encode_documents_with`` over a whole set, in batches, without gradients: vectors (B, T)
    and weights (B, n) as numpy. Serves indexing and training's dev evaluation alike."""
    device = next(head.parameters()).device
    vectors, weights = [], []
    for s in range(0, len(captions), batch_size):
        batch = torch.as_tensor(np.asarray(patches[s : s + batch_size]), dtype=torch.float32, device=device)
        t = torch.as_tensor(caption_vectors[s : s + batch_size], dtype=torch.float32, device=device)
        docs, w = encode_documents_with(backbone, head, batch, captions[s : s + batch_size], t, with_caption)
        vectors.append(docs.float().cpu().numpy())
        weights.append(w.float().cpu().numpy())
    if not vectors:
        return np.zeros((0, caption_vectors.shape[-1]), np.float32), np.zeros((0, head.config.tokens), np.float32)
    return np.concatenate(vectors), np.concatenate(weights)


class CIEARetriever(Retriever):
    """CIEA over one backbone's frozen towers, with a trained head from a checkpoint."""

    name = "ciea"
    title = "CIEA"
    supports_image_queries = True
    trainable = True

    def __init__(self, backbone: Backbone, settings: Settings | None = None,
                 checkpoint: Checkpoint | None = None) -> None:
        super().__init__(backbone)
        settings = settings or Settings()
        train_hint = f"python -m ciea train --retriever {self.name} --backbone {backbone.spec}"
        self.checkpoint = checkpoint or load_checkpoint(settings.checkpoint_stem(backbone.spec, self.name), train_hint)
        head_config = self.checkpoint.config.get("head", {})
        if head_config.get("format") != HEAD_FORMAT:
            raise CheckpointError(f"Checkpoint {self.checkpoint.path} holds a CIEA head of format "
                                  f"{head_config.get('format', 1)}; this version needs format {HEAD_FORMAT} "
                                  f"(anchored document, attention pooling). Retrain it with `{train_hint}`.")
        self.config = CIEAConfig.from_dict(head_config)
        self.head = CIEAHead(self.config)
        self.reader = self.head.attach_adapter(backbone)  # the backbone itself unless the head has an adapter
        self.head.load_state_dict(self.checkpoint.state)
        self.head.eval().to(getattr(backbone, "device", "cpu"))

    @property
    def dim(self) -> int:
        return self.backbone.text_dim

    @property
    def checkpoint_sha256(self) -> str | None:
        return self.checkpoint.sha256

    def towers(self) -> str:
        adapter = f"with a rank-{self.config.adapter_rank} LoRA adapter" if self.config.adapter_rank else "(frozen)"
        return (f"{self.backbone.text_tower} {adapter} reads [start; image patches from "
                f"{self.backbone.image_tower} through a trained projector and complementary "
                "extractor; caption], anchored on the caption's sentence vector")

    def encode_patches(self, patches: np.ndarray, captions: Sequence[str], caption_vectors: np.ndarray | None = None,
                       with_caption: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Vectors (B, dim) and complementarity weights (B, n) for image documents.

        ``caption_vectors`` are the captions' sentence vectors (encoded here when not given).
        """
        if caption_vectors is None:
            caption_vectors = (self.backbone.encode_text(list(captions)) if len(captions)
                               else np.zeros((0, self.dim), np.float32))
        vectors, weights = encode_in_batches(self.reader, self.head, patches, captions, caption_vectors, with_caption)
        return l2_normalize(vectors), weights

    def encode_documents(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        vectors = features.text.copy()
        rows = np.flatnonzero(features.has_image)
        captions = [corpus.documents[i].text for i in rows]
        vectors[rows] = self.encode_patches(features.image.patches[rows], captions, features.text[rows])[0]
        return vectors

    def image_side(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        """Image-side vectors (the L_comp view, no caption), zeros for text-only documents."""
        vectors = np.zeros((len(corpus), self.dim), np.float32)
        rows = np.flatnonzero(features.has_image)
        captions = [corpus.documents[i].text for i in rows]
        vectors[rows] = self.encode_patches(features.image.patches[rows], captions, features.text[rows],
                                            with_caption=False)[0]
        return vectors

    def image_queries(self, features: ImageFeatures) -> np.ndarray:
        return self.encode_patches(features.patches, [""] * len(features.patches), with_caption=False)[0]

    def patch_weights(self, images: Sequence[Image.Image], captions: Sequence[str]) -> np.ndarray:
        """(B, g, g) complementarity weights in [0, 1]: high where the caption misses the image."""
        patches = self.backbone.encode_images(list(images)).patches
        weights = self.encode_patches(patches, list(captions))[1]
        side = int(round(math.sqrt(weights.shape[1])))
        return weights.reshape(len(weights), side, side) if side * side == weights.shape[1] else weights

"""CIEA: Complementary Information Extraction and Alignment (Zeng et al., ACL 2025).

A caption says only part of what an image shows. CIEA writes the image into the language
model's input space and lets the model read it next to the caption:

1. frozen patch features P (B x N x Dv) -> trainable linear projector -> P' (B x N x D);
2. complementarity weight per patch, w_i = 1 - max_j (cos(t_j, p'_i) + 1) / 2 over the real
   caption tokens t_j (the language model's *input* embeddings): high w = the caption does
   not cover that patch;
3. one transformer layer over the patches whose attention logits are multiplied by the key
   patch's w ** 2, so caption-redundant patches lose their pull (the extractor) -> P^;
4. the frozen language model encodes [start ; P^ ; caption tokens]; its pooled output,
   L2-normalised, is the document vector. Queries and text-only documents go through the
   same language model without image tokens, i.e. they are plain sentence embeddings.
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
from ciea.checkpoints import Checkpoint, load_checkpoint
from ciea.config import Settings
from ciea.data.schema import Corpus
from ciea.features import CorpusFeatures
from ciea.retrievers.base import Retriever

ENCODE_BATCH = 32


@dataclass(frozen=True)
class CIEAConfig:
    """Shape and ablation switches of the CIEA head (saved with every checkpoint)."""

    patch_dim: int
    token_dim: int
    num_patches: int
    heads: int = 4
    ffn_mult: int = 2
    weight_power: float = 2.0  # attention logits x w_key ** weight_power (the reference squares)
    use_weights: bool = True  # False = plain attention (the ablation in DESIGN section 9)
    dropout: float = 0.1

    @classmethod
    def for_backbone(cls, backbone: Backbone, **overrides) -> "CIEAConfig":
        return cls(patch_dim=backbone.patch_dim, token_dim=backbone.token_dim,
                   num_patches=backbone.num_patches, **overrides)

    @classmethod
    def from_dict(cls, data: dict) -> "CIEAConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def complementarity_weights(patches: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """w (B, N) = 1 - max over real caption tokens of (cos(token, patch) + 1) / 2.

    patches (B, N, D) projected patch features; tokens (B, L, D) caption input embeddings;
    token_mask (B, L) 1 for content tokens (no start/end/padding). A document without
    caption tokens gets w = 1 everywhere: nothing in it is covered.
    """
    cos = F.normalize(patches, dim=-1) @ F.normalize(tokens, dim=-1).transpose(1, 2)  # (B, N, L)
    similarity = (cos + 1) / 2 * token_mask[:, None, :].to(cos.dtype)  # masked tokens -> 0 (the minimum)
    return 1 - similarity.amax(dim=-1) if tokens.shape[1] else torch.ones(patches.shape[:2], device=patches.device)


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

    def forward(self, patches: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        b, n, d = patches.shape
        q, k, v = self.qkv(self.norm1(patches)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)  # (B, H, N, N)
        if self.use_weights:
            logits = logits * weights[:, None, None, :].pow(self.power)
        mixed = (self.dropout(logits.softmax(dim=-1)) @ v).transpose(1, 2).reshape(b, n, d)
        x = patches + self.dropout(self.out(mixed))
        return x + self.dropout(self.ffn(self.norm2(x)))


class CIEAHead(nn.Module):
    """The trainable part of CIEA: projector + complementary information extractor."""

    def __init__(self, config: CIEAConfig) -> None:
        super().__init__()
        self.config = config
        self.projector = nn.Linear(config.patch_dim, config.token_dim)
        self.extractor = ComplementaryExtractor(config)

    def forward(self, patches: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Extracted patches P^ (B, N, D) and complementarity weights w (B, N)."""
        projected = self.projector(patches)
        weights = complementarity_weights(projected, tokens, token_mask)
        return self.extractor(projected, weights), weights


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


def encode_sequence(backbone: Backbone, extracted: torch.Tensor, caption: CaptionTokens,
                    with_caption: bool = True) -> torch.Tensor:
    """L2-normalised language-model vectors of [start ; P^ ; caption] (or [start ; P^ ; end])."""
    b, n, _ = extracted.shape
    ones = torch.ones(b, 1 + n, dtype=caption.rest_mask.dtype, device=extracted.device)
    if with_caption:
        rest, rest_mask = caption.rest, caption.rest_mask
    else:  # keep only the end token: the first non-content real token after the caption words
        end = (caption.rest_mask.bool() & ~caption.content_mask.bool()).float().argmax(dim=1)
        rest = caption.rest[torch.arange(b), end][:, None]
        rest_mask = torch.ones(b, 1, dtype=caption.rest_mask.dtype, device=extracted.device)
    sequence = torch.cat([caption.start, extracted, rest], dim=1)
    mask = torch.cat([ones, rest_mask], dim=1)
    limit = backbone.max_sequence_length
    if sequence.shape[1] > limit:
        sequence, mask = sequence[:, :limit], mask[:, :limit]
    return F.normalize(backbone.encode_token_embeddings(sequence, mask), dim=-1)


class CIEARetriever(Retriever):
    """CIEA over one backbone's frozen towers, with a trained head from a checkpoint."""

    name = "ciea"
    title = "CIEA"
    supports_image_queries = True

    def __init__(self, backbone: Backbone, settings: Settings | None = None,
                 checkpoint: Checkpoint | None = None) -> None:
        super().__init__(backbone)
        settings = settings or Settings()
        self.checkpoint = checkpoint or load_checkpoint(
            settings.checkpoint_stem(backbone.spec, self.name),
            train_hint=f"python -m ciea train --retriever {self.name} --backbone {backbone.spec}",
        )
        self.config = CIEAConfig.from_dict(self.checkpoint.config["head"])
        self.head = CIEAHead(self.config)
        self.head.load_state_dict(self.checkpoint.state)
        self.head.eval().to(getattr(backbone, "device", "cpu"))

    @property
    def dim(self) -> int:
        return self.backbone.text_dim

    @property
    def checkpoint_sha256(self) -> str | None:
        return self.checkpoint.sha256

    def towers(self) -> str:
        return (f"{self.backbone.text_tower} (frozen) reads [start; image patches from "
                f"{self.backbone.image_tower} through a trained projector and complementary "
                "extractor; caption]")

    @torch.inference_mode()
    def encode_patches(self, patches: np.ndarray, captions: Sequence[str], with_caption: bool = True
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Vectors (B, dim) and complementarity weights (B, N) for image documents."""
        vectors, weights = [], []
        for s in range(0, len(captions), ENCODE_BATCH):
            tokens = caption_tokens(self.backbone, captions[s : s + ENCODE_BATCH])
            batch = torch.as_tensor(patches[s : s + ENCODE_BATCH], dtype=torch.float32, device=tokens.rest.device)
            extracted, w = self.head(batch, tokens.rest, tokens.content_mask)
            vectors.append(encode_sequence(self.backbone, extracted, tokens, with_caption).cpu().numpy())
            weights.append(w.cpu().numpy())
        if not vectors:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, self.config.num_patches), np.float32)
        return l2_normalize(np.concatenate(vectors)), np.concatenate(weights)

    def encode_documents(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        vectors = features.text.copy()
        rows = np.flatnonzero(features.has_image)
        captions = [corpus.documents[i].text for i in rows]
        vectors[rows] = self.encode_patches(features.image.patches[rows], captions)[0]
        return vectors

    def image_side(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        """Image-side vectors [start ; P^ ; end] (the L_comp view), zeros for text-only documents."""
        vectors = np.zeros((len(corpus), self.dim), np.float32)
        rows = np.flatnonzero(features.has_image)
        captions = [corpus.documents[i].text for i in rows]
        vectors[rows] = self.encode_patches(features.image.patches[rows], captions, with_caption=False)[0]
        return vectors

    def image_queries(self, features: ImageFeatures) -> np.ndarray:
        return self.encode_patches(features.patches, [""] * len(features.patches), with_caption=False)[0]

    def patch_weights(self, images: Sequence[Image.Image], captions: Sequence[str]) -> np.ndarray:
        """(B, g, g) complementarity weights in [0, 1]: high where the caption misses the image."""
        patches = self.backbone.encode_images(list(images)).patches
        weights = self.encode_patches(patches, list(captions))[1]
        side = int(round(math.sqrt(weights.shape[1])))
        return weights.reshape(len(weights), side, side) if side * side == weights.shape[1] else weights

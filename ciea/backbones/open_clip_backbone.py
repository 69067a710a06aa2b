"""open_clip towers (production): real CLIP text and image encoders in one joint space.

Spec forms: ``open_clip:ViT-B-32:laion2b_s34b_b79k`` (weights from the Hugging Face Hub on
first use), ``open_clip:ViT-B-32:/path/to/open_clip_model.safetensors`` (a local checkpoint)
and ``open_clip:ViT-B-32:none`` (random weights with the real shapes and cost, for tests).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ciea.backbones.base import Backbone, BackboneLoadError, ImageFeatures, TokenEmbeddings, l2_normalize
from ciea.images import square_rgb

RANDOM_WEIGHTS = ("none", "random")
RANDOM_WEIGHTS_SEED = 0


class OpenClipBackbone(Backbone):
    """A CLIP model from open_clip; pooled image vectors live in the text space."""

    joint_space = True
    language_model_attr = "model"
    # The text transformer's MLPs only (its attention is nn.MultiheadAttention, which LoRA does
    # not wrap as plain linear layers); the image tower's blocks have the same names under visual.
    adapter_targets = r"transformer\.resblocks\.\d+\.mlp\.(c_fc|c_proj)"

    def __init__(self, spec: str, model_name: str, pretrained: str | None, device: str = "cpu") -> None:
        self.spec = spec
        self.device = torch.device(device)
        try:
            import open_clip

            # Random weights come from a fixed seed (without touching the caller's RNG), so every
            # process builds the same model: cached features and built indexes stay valid.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_WEIGHTS_SEED)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=pretrained, device=self.device, weights_only=True
                )
            self.tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as exc:  # offline hub fetch, unknown model, bad checkpoint...
            hint = (
                "If the host has no network, download the checkpoint elsewhere and use "
                f"'open_clip:{model_name}:/path/to/checkpoint.safetensors'."
                if pretrained
                else "Check the model name against open_clip.list_models()."
            )
            raise BackboneLoadError(f"Could not load backbone '{spec}': {exc}. {hint}") from exc
        self.model = model.eval()
        self._transform = preprocess
        visual = self.model.visual
        visual.output_tokens = True
        self.image_size = int(np.atleast_1d(visual.image_size)[0])
        self.text_dim = self.image_dim = int(self.model.text_projection.shape[1])
        self.token_dim = int(self.model.token_embedding.weight.shape[1])
        self.max_text_tokens = int(self.model.context_length)
        with torch.inference_mode():
            _, tokens = visual(torch.zeros(1, 3, self.image_size, self.image_size, device=self.device))
        self.num_patches, self.patch_dim = int(tokens.shape[1]), int(tokens.shape[2])
        weights = pretrained if pretrained else "random weights"
        self.text_tower = f"open_clip {model_name} text encoder ({weights})"
        self.image_tower = f"open_clip {model_name} image encoder ({weights})"


    def language_model_shared(self) -> list[torch.nn.Module]:
        return [self.model.visual]  # one module holds both towers; a private copy keeps the image tower shared

    def _tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.text_dim), dtype=np.float32)
        out = [
            self.model.encode_text(self._tokenize(texts[s : s + batch_size])).float().cpu().numpy()
            for s in range(0, len(texts), batch_size)
        ]
        return l2_normalize(np.concatenate(out))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text)) + 2  # + start and end tokens

    @property
    def special_token_ids(self) -> frozenset[int]:
        ids = {0}  # padding
        for attr in ("sot_token_id", "eot_token_id"):
            if getattr(self.tokenizer, attr, None) is not None:
                ids.add(int(getattr(self.tokenizer, attr)))
        return frozenset(ids)

    def embed_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.token_embedding(input_ids.to(self.device))

    def encode_token_states(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """CLIP's text transformer (causal) on input embeddings, every position projected into
        the joint space (B, L, text_dim)."""
        model = self.model
        length = embeddings.shape[1]
        if length > self.max_sequence_length:
            raise ValueError(f"sequence of {length} exceeds the context length {self.max_sequence_length}")
        x = embeddings + model.positional_embedding[:length].to(embeddings.dtype)
        attn_mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
        x = model.ln_final(model.transformer(x, attn_mask=attn_mask))
        projection = model.text_projection
        return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection

    def encode_token_embeddings(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled at the last real token: for tokenised text the end-of-text token, as in ``encode_text``."""
        states = self.encode_token_states(embeddings, attention_mask)
        last = attention_mask.long().sum(1).clamp(min=1) - 1
        return states[torch.arange(states.shape[0], device=states.device), last]

    @torch.inference_mode()
    def embed_tokens(self, texts: Sequence[str]) -> TokenEmbeddings:
        ids = self._tokenize(texts)
        return TokenEmbeddings(ids, self.embed_ids(ids), (ids != 0).long())

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._transform(square_rgb(image, self.image_size))

    def _image_forward(self, pixels: torch.Tensor) -> ImageFeatures:
        pooled, tokens = self.model.visual(pixels.to(self.device))
        return ImageFeatures(pooled=pooled.float().cpu().numpy(), patches=tokens.float().cpu().numpy())

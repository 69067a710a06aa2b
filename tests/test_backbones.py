"""Backbones: spec parsing, shapes, determinism, preprocessing, clear load errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ciea.backbones import BackboneLoadError, load_backbone, parse_spec
from ciea.images import pad_to_square, square_rgb, to_rgb_on_white

from conftest import RANDOM_CLIP, draw_shape


@pytest.mark.parametrize(
    "spec, family, model, pretrained",
    [
        ("bundled", "bundled", "", None),
        ("open_clip:ViT-B-32:laion2b_s34b_b79k", "open_clip", "ViT-B-32", "laion2b_s34b_b79k"),
        ("open_clip:ViT-B-32:/ckpt/model.safetensors", "open_clip", "ViT-B-32", "/ckpt/model.safetensors"),
        ("open_clip:ViT-B-32:none", "open_clip", "ViT-B-32", None),
        ("open_clip:ViT-B-32", "open_clip", "ViT-B-32", None),
    ],
)
def test_parse_spec(spec, family, model, pretrained):
    parsed = parse_spec(spec)
    assert (parsed.family, parsed.model, parsed.pretrained) == (family, model, pretrained)


@pytest.mark.parametrize("spec", ["", "clip", "open_clip:", "bundled:extra"])
def test_unknown_spec_is_refused_with_the_accepted_forms(spec):
    with pytest.raises(BackboneLoadError, match="Expected a backbone spec"):
        parse_spec(spec)


def test_unloadable_checkpoint_names_the_spec(tmp_path):
    spec = f"open_clip:ViT-B-32:{tmp_path / 'missing.safetensors'}"
    with pytest.raises(BackboneLoadError) as info:
        load_backbone(spec, device="cpu")
    assert spec in str(info.value)


def test_bundled_shapes_and_normalisation(bundled):
    text = bundled.encode_text(["An elephant.", "A red fire truck.", ""])
    assert text.shape == (3, 384) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    feats = bundled.encode_images([draw_shape("circle", (200, 0, 0)), draw_shape("square", (0, 0, 200), 300)])
    assert feats.pooled.shape == (2, 1280)
    assert feats.patches.shape == (2, 49, 1280)
    assert feats.class_probs.shape == (2, 1000) and len(bundled.class_names) == 1000
    np.testing.assert_allclose(feats.class_probs.sum(1), 1.0, atol=1e-4)
    np.testing.assert_allclose(feats.pooled, feats.patches.mean(1), atol=1e-4)


def test_bundled_is_deterministic_and_batch_independent(bundled):
    texts = ["A frog.", "An orange fruit.", "A blue box sitting on a table."]
    together = bundled.encode_text(texts)
    alone = np.concatenate([bundled.encode_text([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    images = [draw_shape("triangle", (0, 150, 0)), draw_shape("circle", (0, 0, 0))]
    a, b = bundled.encode_images(images), bundled.encode_images(images[:1])
    np.testing.assert_allclose(a.patches[:1], b.patches, atol=1e-4)


def test_bundled_text_similarity_is_semantic(bundled):
    e = bundled.encode_text(["An elephant.", "a large grey animal with a trunk", "A red fire truck."])
    assert e[0] @ e[1] > e[0] @ e[2]


def test_bundled_token_embeddings_are_input_embeddings(bundled):
    tokens = bundled.embed_tokens(["a frog", "a much longer caption about a frog"])
    assert tokens.embeddings.shape[:2] == tokens.input_ids.shape == tokens.attention_mask.shape
    assert tokens.embeddings.shape[2] == bundled.token_dim
    assert tokens.attention_mask[0].sum() < tokens.attention_mask[1].sum()
    table = bundled.text_model.get_input_embeddings().weight
    torch.testing.assert_close(tokens.embeddings[0, 1], table[tokens.input_ids[0, 1]])


def test_bundled_counts_tokens_beyond_the_limit(bundled):
    assert bundled.count_tokens("word " * 1000) > bundled.max_text_tokens


def test_rgba_goes_on_white_and_padding_keeps_aspect():
    rgba = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgb = to_rgb_on_white(rgba)
    assert rgb.mode == "RGB" and rgb.getpixel((5, 5)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (0, 0, 255)
    square = pad_to_square(rgb)
    assert square.size == (40, 40) and square.getpixel((0, 10)) == (0, 0, 255)
    assert square_rgb(rgba, 224).size == (224, 224)


def test_open_clip_random_weights_shapes(random_clip):
    assert random_clip.joint_space and random_clip.spec == RANDOM_CLIP
    text = random_clip.encode_text(["a cat", "a dog"])
    assert text.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    feats = random_clip.encode_images([draw_shape("circle", (10, 200, 10), 64)])
    assert feats.pooled.shape == (1, 512) and feats.patches.shape == (1, 49, 768)
    assert feats.class_probs is None
    tokens = random_clip.embed_tokens(["a cat"])
    assert tokens.embeddings.shape == (1, 77, 512) and int(tokens.attention_mask.sum()) == 4
    assert "open_clip ViT-B-32" in random_clip.text_tower


def test_open_clip_adapter_wraps_the_text_mlps_of_a_private_copy_only(random_clip):
    """CIEA's LoRA adapter on open_clip: one module holds both towers, so the private copy shares
    the image tower, and only the text transformer's MLPs get LoRA layers."""
    from ciea.retrievers.adapter import attach_lora

    reader, modules = attach_lora(random_clip, rank=2)
    assert reader.model is not random_clip.model and reader.model.visual is random_clip.model.visual
    lora = [n for n, _ in reader.model.named_modules() if n.endswith("lora_A")]
    assert len(lora) == 2 * len(random_clip.model.transformer.resblocks) == len(modules) // 2
    assert all(n.startswith("transformer.resblocks.") and ".mlp." in n for n in lora)
    assert not any("lora" in n for n, _ in random_clip.model.named_modules())
    tokens = random_clip.embed_tokens(["a cat"])
    with torch.no_grad():
        torch.testing.assert_close(reader.encode_token_states(tokens.embeddings, tokens.attention_mask),
                                   random_clip.encode_token_states(tokens.embeddings, tokens.attention_mask))


def test_open_clip_local_checkpoint_path_loads_the_same_weights(random_clip, tmp_path):
    path = tmp_path / "vit_b_32.safetensors"
    save_file({k: v.contiguous() for k, v in random_clip.model.state_dict().items()}, str(path))
    loaded = load_backbone(f"open_clip:ViT-B-32:{path}", device="cpu")
    assert loaded is not random_clip
    np.testing.assert_allclose(loaded.encode_text(["a red ball"]), random_clip.encode_text(["a red ball"]),
                               atol=1e-5)
    image = [draw_shape("square", (90, 90, 200))]
    np.testing.assert_allclose(loaded.encode_images(image).pooled, random_clip.encode_images(image).pooled,
                               atol=1e-4)

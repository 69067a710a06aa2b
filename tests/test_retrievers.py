"""ConSE and the dual-encoder score forms, on hand-made numbers and a tiny corpus."""

from __future__ import annotations

import numpy as np
import pytest

from ciea.backbones import ImageFeatures
from ciea.features import CorpusFeatures
from ciea.retrievers import UnknownRetrieverError, create_retriever, retriever_names
from ciea.retrievers.alignment import conse_embed, default_alignment
from ciea.retrievers.dual import DualFusedRetriever


def test_conse_on_a_hand_made_probability_vector():
    classes = np.eye(4, dtype=np.float32)  # class c embeds as the c-th unit vector
    probs = np.array([[0.5, 0.3, 0.15, 0.05]])
    # top-2: weights 0.5/0.8 and 0.3/0.8 on e0, e1, then L2-normalised
    expected = np.array([[0.625, 0.375, 0.0, 0.0]]) / np.hypot(0.625, 0.375)
    np.testing.assert_allclose(conse_embed(probs, classes, top_t=2), expected, atol=1e-6)
    # top-T larger than the class count uses every class
    full = np.array([0.5, 0.3, 0.15, 0.05])
    np.testing.assert_allclose(conse_embed(probs, classes, top_t=10)[0], full / np.linalg.norm(full), atol=1e-6)


def test_conse_picks_the_most_probable_classes_not_the_first():
    classes = np.eye(3, dtype=np.float32)
    out = conse_embed(np.array([[0.1, 0.2, 0.7]]), classes, top_t=1)
    np.testing.assert_allclose(out, [[0.0, 0.0, 1.0]], atol=1e-6)


def fake_features(bundled, n=3, seed=0):
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n, bundled.text_dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    probs = rng.dirichlet(np.ones(1000), size=n).astype(np.float32)
    image = ImageFeatures(np.zeros((n, 1280), np.float32), np.zeros((n, 49, 1280), np.float32), probs)
    return CorpusFeatures(text, image, np.array([True] * (n - 1) + [False]))


def test_split_score_is_the_mean_of_caption_and_image_cosines(bundled):
    features = fake_features(bundled)
    split = create_retriever("dual-split", bundled)
    docs = split.encode_documents(None, features)
    text, image = split.document_parts(features)
    assert not image[-1].any()  # text-only document: no image half
    q = bundled.encode_text(["a red ball"])
    scores = split.encode_queries(["a red ball"]) @ docs.T
    np.testing.assert_allclose(scores[0], (q @ text.T + q @ image.T)[0] / 2, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(docs[:-1], axis=1), 1.0, atol=1e-5)


def test_fused_vector_is_the_normalised_sum(bundled):
    features = fake_features(bundled)
    fused = create_retriever("dual-fused", bundled)
    text, image = fused.document_parts(features)
    expected = (text + image) / np.linalg.norm(text + image, axis=1, keepdims=True)
    np.testing.assert_allclose(fused.encode_documents(None, features), expected, atol=1e-6)


@pytest.mark.parametrize("name", ["dual-split", "dual-fused", "dual-gcl"])
def test_training_and_indexing_share_one_formula(name, bundled):
    """The torch forms training differentiates are the numpy forms indexing and queries use."""
    import torch

    from ciea.config import Settings
    from ciea.retrievers import REGISTRY
    from ciea.retrievers.alignment import TrainedAlignment

    features = fake_features(bundled)
    cls = REGISTRY[name]
    retriever = cls(bundled, alignment=TrainedAlignment.for_backbone(bundled).eval(), settings=Settings())
    text, image = retriever.document_parts(features)
    trained = cls.document_form(torch.as_tensor(text), torch.as_tensor(image))
    assert isinstance(trained, torch.Tensor)
    np.testing.assert_allclose(trained.numpy(), retriever.encode_documents(None, features), atol=1e-6)
    q = bundled.encode_text(["a red ball"])
    np.testing.assert_allclose(cls.query_form(torch.as_tensor(q)).numpy(), retriever.text_queries(q), atol=1e-6)


def test_the_classes_say_what_is_trainable_and_every_class_takes_one_signature(bundled, tmp_path):
    from ciea.config import Settings
    from ciea.retrievers import REGISTRY, TRAINABLE

    assert TRAINABLE == ("dual-split", "dual-fused", "dual-gcl", "ciea")
    assert [n for n, cls in REGISTRY.items() if not cls.trainable] == ["text-dense"]
    settings = Settings(checkpoints_dir=tmp_path)  # no checkpoints: the untrained dual encoders still build
    for name in ("text-dense", "dual-split", "dual-fused"):
        assert create_retriever(name, bundled, settings).checkpoint_sha256 is None
    with pytest.raises(ValueError, match="train"):  # these need their checkpoint
        create_retriever("ciea", bundled, settings)


def test_registry_names_and_unknown_name(bundled):
    assert retriever_names()[:3] == ["text-dense", "dual-split", "dual-fused"]
    with pytest.raises(UnknownRetrieverError, match="Known: text-dense"):
        create_retriever("clip", bundled)


def test_towers_never_call_the_bundled_dual_encoder_clip(bundled):
    for name in retriever_names():
        assert "clip" not in create_retriever(name, bundled).towers().lower()
    assert "ConSE" in DualFusedRetriever(bundled, alignment=default_alignment(bundled)).towers()
    assert "trained linear map" in create_retriever("dual-fused", bundled).towers()


def test_image_query_finds_the_matching_drawing(tiny_built):
    from ciea.service import SearchService
    from conftest import draw_shape

    service = SearchService(tiny_built)
    state = service.retriever("tiny", "dual-fused")
    query = state.retriever.image_queries(service.backbone.encode_images([draw_shape("square", (30, 30, 220))]))
    hits = state.index.search(query, 6)[0]
    images = [h.doc_id for h in hits]
    assert images.index("shapes/blue-square.png") < images.index("animals/frog.png")

"""CIEA's head, its training loop and checkpoints, on the bundled towers and tiny synthetic data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ciea.backbones import ImageFeatures
from ciea.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from ciea.data.schema import Document
from ciea.features import CorpusFeatures
from ciea.losses import complementary_query_ids
from ciea.retrievers.ciea import (CIEAConfig, CIEAHead, CIEARetriever, ComplementaryExtractor, caption_tokens,
                                  complementarity_weights, encode_sequence)
from ciea.train import Pair, Split, TrainConfig, complementary_query_vectors, encode_ciea_documents, train_alignment, train_ciea


def test_complementarity_weight_is_low_where_the_caption_covers_the_patch():
    caption = torch.tensor([[1.0, 0.0, 0.0]])
    covered, uncovered = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([-1.0, 0.0, 0.0])
    aligned = torch.stack([covered, uncovered, torch.tensor([0.0, 1.0, 0.0])])[None]  # (1, 3, 3)
    w = complementarity_weights(aligned, caption, torch.tensor([True]))
    assert w[0].tolist() == pytest.approx([0.0, 1.0, 0.5], abs=1e-6)  # cos 1, -1, 0
    no_caption = complementarity_weights(aligned, caption, torch.tensor([False]))
    assert no_caption.tolist() == [[1.0, 1.0, 1.0]]  # nothing is covered without a caption


def test_extractor_shapes_and_weights_change_attention():
    torch.manual_seed(0)
    config = CIEAConfig(patch_dim=10, token_dim=8, num_patches=4, heads=2, dropout=0.0)
    head = CIEAHead(config).eval()
    patches, captions = torch.randn(3, 4, 10), torch.randn(3, 8)
    extracted, w, projected = head(patches, captions, torch.ones(3, dtype=torch.bool))
    assert extracted.shape == projected.shape == (3, 4, 8) and w.shape == (3, 4)
    # LayerNorm at the word scale: projected patches start with a word embedding's norm (1.0 here)
    assert projected.norm(dim=-1).mean().item() == pytest.approx(1.0, rel=0.05)
    pooled = CIEAHead(CIEAConfig(patch_dim=10, token_dim=8, num_patches=4, heads=2, patch_grid=1)).eval()
    assert pooled(patches, captions, torch.ones(3, dtype=torch.bool))[0].shape == (3, 1, 8)
    extractor = ComplementaryExtractor(config).eval()
    x = torch.randn(1, 4, 8)
    flat, full = extractor(x, torch.zeros(1, 4)), extractor(x, torch.ones(1, 4))
    assert not torch.allclose(flat, full)  # w = 0 flattens every logit: uniform attention
    plain = ComplementaryExtractor(dataclasses.replace(config, use_weights=False)).eval()
    plain.load_state_dict(extractor.state_dict())
    assert torch.allclose(plain(x, torch.zeros(1, 4)), full, atol=1e-6)


def test_attention_pool_starts_as_the_mean_and_ignores_padding():
    head = CIEAHead(CIEAConfig(patch_dim=4, token_dim=4, num_patches=4, heads=1))
    states = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = head.pool(states, mask)
    torch.testing.assert_close(pooled[0], states[0, :3].mean(0))
    torch.testing.assert_close(pooled[1], states[1].mean(0))


def test_anchored_document_is_the_same_in_training_and_indexing(bundled, tmp_path):
    torch.manual_seed(1)
    head = CIEAHead(CIEAConfig.for_backbone(bundled, dropout=0.0)).eval()
    with torch.no_grad():
        head.pool_query.normal_()  # a pooling that is not the mean
        head.log_gain.fill_(0.3)
    rng = np.random.default_rng(0)
    patches = rng.normal(size=(3, bundled.num_patches, bundled.patch_dim)).astype(np.float32)
    captions = ["A frog.", "A red ball.", "A boat."]
    t = bundled.encode_text(captions)
    trained = encode_ciea_documents(bundled, head, patches, captions, t)
    save_checkpoint(tmp_path / "ciea", head, {"head": dataclasses.asdict(head.config)})
    indexed = CIEARetriever(bundled, checkpoint=load_checkpoint(tmp_path / "ciea")).encode_patches(patches, captions)[0]
    np.testing.assert_allclose(indexed, trained, atol=1e-5)
    # and both are normalise(t + g * normalise(z)): the caption's own vector is in every document
    with torch.no_grad():
        tokens = caption_tokens(bundled, captions)
        has = torch.ones(3, dtype=torch.bool)
        extracted, _, _ = head(torch.as_tensor(patches), torch.as_tensor(t), has)
        z = torch.nn.functional.normalize(encode_sequence(bundled, head, extracted, tokens), dim=-1)
        manual = torch.nn.functional.normalize(torch.as_tensor(t) + head.gain * z, dim=-1).numpy()
    np.testing.assert_allclose(trained, manual, atol=1e-5)
    assert np.all(np.sum(trained * t, axis=1) > 0.5)


def test_checkpoint_without_the_new_head_fields_is_refused(bundled, tmp_path):
    head = CIEAHead(CIEAConfig.for_backbone(bundled))
    old = {k: v for k, v in dataclasses.asdict(head.config).items() if k not in ("format", "anchor")}
    save_checkpoint(tmp_path / "ciea", head, {"head": old})
    with pytest.raises(CheckpointError, match="format 1.*python -m ciea train --retriever ciea"):
        CIEARetriever(bundled, checkpoint=load_checkpoint(tmp_path / "ciea"))


def test_q_comp_deletes_caption_tokens_with_the_real_tokenizer(bundled):
    tok = bundled.tokenizer
    query = tok("a blue bicycle beside an elephant")["input_ids"]
    caption = tok("A blue bicycle.")["input_ids"]
    kept = complementary_query_ids(query, caption, bundled.special_token_ids)
    assert tok.decode(kept, skip_special_tokens=True) == "beside an elephant"
    assert kept[0] == tok.cls_token_id and kept[-1] == tok.sep_token_id
    vectors, valid = complementary_query_vectors(bundled, ["a blue bicycle beside an elephant", "A blue bicycle"],
                                                 ["A blue bicycle.", "A blue bicycle."])
    assert valid.tolist() == [True, False]
    expected = bundled.encode_text(["beside an elephant"])[0]
    assert float(vectors[0] @ expected) == pytest.approx(1.0, abs=1e-5)


def test_caption_tokens_mark_only_words_as_content(bundled):
    tokens = caption_tokens(bundled, ["A frog.", ""])
    assert tokens.start.shape[1] == 1
    assert tokens.content_mask[0].sum().item() == 3  # "a", "frog", "."
    assert tokens.content_mask[1].sum().item() == 0


QUERIES = ["a red ball", "a wooden boat", "a yellow school bus", "a sleeping cat", "a green tree",
           "a guitar", "an old clock", "a slice of pizza"]


def synthetic_split(bundled, image_only: bool) -> Split:
    """Eight documents whose random patch features must be mapped onto eight queries."""
    rng = np.random.default_rng(0)
    n = len(QUERIES)
    patches = rng.normal(size=(n, bundled.num_patches, bundled.patch_dim)).astype(np.float32)
    pooled = patches.mean(1)
    docs = [Document(f"d{i}", "A picture.", f"d{i}.png") for i in range(n)]
    text = bundled.encode_text([d.text for d in docs])
    features = CorpusFeatures(text, ImageFeatures(pooled, patches), np.ones(n, bool))
    return Split("synthetic", docs, features, [Pair(q, (i,), image_only) for i, q in enumerate(QUERIES)])


def top1(query_vectors: np.ndarray, doc_vectors: np.ndarray) -> float:
    return float(np.mean(np.argmax(query_vectors @ doc_vectors.T, axis=1) == np.arange(len(query_vectors))))


def test_ciea_overfits_eight_pairs_and_checkpoint_round_trips(bundled, tmp_path):
    split = synthetic_split(bundled, image_only=False)
    # patience 3: dev (= these eight pairs) reaches MRR 1.0 early; 37 more epochs only cost time
    config = TrainConfig(epochs=40, batch_size=8, lr=3e-3, patience=3, seed=0, weight_decay=0.0)
    head, extra, history = train_ciea(bundled, split, [split], config, progress=False)
    queries = bundled.encode_text(QUERIES)
    docs = encode_ciea_documents(bundled, head, split.features.image.patches, [d.text for d in split.documents],
                                 split.features.text)
    assert history[0]["dev_mrr10"] < 0.9  # untrained: random patches say nothing about the queries
    assert top1(queries, docs) == 1.0

    checkpoint = save_checkpoint(tmp_path / "ciea", head, {"head": extra["head"]})
    retriever = CIEARetriever(bundled, checkpoint=load_checkpoint(tmp_path / "ciea"))
    again = retriever.encode_patches(split.features.image.patches, [d.text for d in split.documents])[0]
    np.testing.assert_allclose(again, docs, atol=1e-5)
    assert retriever.checkpoint_sha256 == checkpoint.sha256


def test_trained_alignment_overfits_eight_image_only_pairs(bundled):
    split = synthetic_split(bundled, image_only=True)
    config = TrainConfig(epochs=60, batch_size=8, lr=1e-2, patience=60, seed=0, weight_decay=0.0)
    head, _, _ = train_alignment("dual-fused", bundled, split, [split], config, progress=False)
    with torch.no_grad():
        image = head(torch.as_tensor(split.features.image.pooled)).numpy()
    assert top1(bundled.encode_text(QUERIES), image) == 1.0


def test_damaged_or_missing_checkpoint_gives_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="No trained checkpoint.*python -m ciea train"):
        load_checkpoint(tmp_path / "missing", "python -m ciea train --retriever ciea")
    head = CIEAHead(CIEAConfig(patch_dim=4, token_dim=4, num_patches=4, heads=1))
    save_checkpoint(tmp_path / "ciea", head, {})
    path = tmp_path / "ciea.safetensors"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "ciea")


def test_epoch_batches_group_documents_that_share_a_caption():
    import random

    from ciea.train import _epoch_batches, caption_groups

    docs = [Document(f"d{i}", f"caption {i % 3}", f"d{i}.png") for i in range(12)]
    groups = caption_groups(docs)
    assert groups == [0, 1, 2] * 4
    pairs = [Pair(f"q{i}", (i,), False) for i in range(12)]
    config = TrainConfig(batch_size=6, group_size=2)
    batches = _epoch_batches(pairs, config, random.Random(0), groups)
    flat = [row for batch in batches for _, row in batch]
    assert sorted(flat) == list(range(12))  # every pair once
    runs = [flat[s : s + 2] for s in range(0, 12, 2)]
    assert all(groups[a] == groups[b] for a, b in runs)  # consecutive runs share a caption
    plain = _epoch_batches(pairs, dataclasses.replace(config, group_size=1), random.Random(0), groups)
    assert sorted(row for batch in plain for _, row in batch) == list(range(12))
    capped = _epoch_batches(pairs, dataclasses.replace(config, pairs_per_epoch=4), random.Random(0), groups)
    assert sum(len(b) for b in capped) == 4


def test_dev_queries_rank_training_and_dev_scenes_but_never_test_scenes():
    from ciea.config import Settings
    from ciea.data.schema import load_corpus
    from ciea.train import _split_pairs, _split_rows

    corpus = load_corpus("scenes", Settings().assets_dir)
    rows = np.concatenate([_split_rows(corpus, "train"), _split_rows(corpus, "dev")])
    pairs = _split_pairs(corpus, "dev", rows)
    categories = {corpus.documents[rows[p]].category for pair in pairs for p in pair.positives}
    assert categories <= {"train", "dev"} and "dev" in categories
    assert {corpus.documents[r].category for r in rows} == {"train", "dev"}
    assert len(pairs) > 0.9 * sum(1 for _ in open(corpus.root / "queries_dev.jsonl", encoding="utf-8"))


def test_mined_hard_negatives_are_the_best_scoring_non_relevant_documents():
    from ciea.train import mine_hard_negatives

    docs = [Document("a", "a red ball", "a.png"), Document("b", "A ball.", "b.png"),
            Document("c", "A cube.", "c.png"), Document("d", "A cone.", "d.png")]
    empty = np.zeros((4, 2), np.float32)
    features = CorpusFeatures(empty, ImageFeatures(empty, empty[:, None]), np.ones(4, bool))
    pairs = [Pair("a red ball", (1,), False), Pair("A cube.", (2,), True)]
    split = Split("tiny", docs, features, pairs)
    queries = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    # scores for query 0: a 0.9 (its own text: a duplicate, never a negative), b 1.0 (positive),
    # c 0.5, d 0.7 -> d, then c
    documents = np.array([[0.9, 0], [1.0, 0], [0.5, 0], [0.7, 0]], np.float32)
    mined = mine_hard_negatives(split, queries, documents, pool=2)
    assert mined[0] == (3, 2)
    assert mined[1] == ()  # caption -> image pairs get none
    assert mine_hard_negatives(split, queries, documents, pool=1)[0] == (3,)


@pytest.mark.parametrize("name", ["dual-fused", "ciea"])
def test_second_stage_trains_with_mined_negatives_and_keeps_the_best_epoch(bundled, monkeypatch, name):
    from ciea.losses import HardNegatives

    calls = []
    extend = HardNegatives.extend
    monkeypatch.setattr(HardNegatives, "extend", lambda self, *a: calls.append(len(self.documents)) or extend(self, *a))
    split = synthetic_split(bundled, image_only=False)
    config = TrainConfig(epochs=2, batch_size=4, lr=1e-2, patience=10, seed=0, hard_negative_epochs=2,
                         hard_negative_pool=3)
    if name == "ciea":
        _, extra, history = train_ciea(bundled, split, [split], config, progress=False)
    else:
        _, extra, history = train_alignment(name, bundled, split, [split], config, progress=False)
    assert [h["stage"] for h in history[1:]] == [1, 1, 2, 2]
    assert calls and all(n == 4 for n in calls)  # stage 2's batches carried one negative per query
    assert extra["dev_mrr10"] == max(h["dev_mrr10"] for h in history)


def test_dev_selection_scores_like_before_through_the_shared_evaluator():
    """Training's dev MRR@10 comes from ciea/evaluate.py's Evaluator and equals the earlier
    hand-built run (top 10 by score, then ranx) on a split without tied scores."""
    from ciea.evaluate import evaluate_run
    from ciea.train import dev_mrr

    rng = np.random.default_rng(3)
    docs = [Document(f"doc{i}", f"caption {i}", None) for i in range(40)]
    pairs = [Pair(f"query {i}", tuple(sorted({int(rng.integers(40)), int(rng.integers(40))})), False)
             for i in range(25)]
    dev = Split("dev", docs, None, pairs)
    queries, documents = rng.normal(size=(25, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)

    scores = queries @ documents.T
    top = np.argsort(-scores, axis=1)[:, :10]
    ids = [d.doc_id for d in docs]
    run = {str(i): {ids[j]: float(scores[i, j]) for j in row} for i, row in enumerate(top)}
    qrels = {str(i): {ids[r]: 1 for r in p.positives} for i, p in enumerate(pairs)}
    before = evaluate_run(qrels, run, ["mrr@10"])["mrr@10"]
    by_hand = np.mean([next((1 / (rank + 1) for rank, j in enumerate(row) if j in p.positives), 0.0)
                       for row, p in zip(top, pairs)])
    assert dev_mrr(dev, queries, documents) == before == round(float(by_hand), 4)
    assert 0 < before < 1


def test_lora_adapter_is_private_trains_only_its_weights_and_round_trips(bundled, tmp_path):
    """The adapter's language model is a copy: the shared one (every other retriever's) is never
    changed; only LoRA weights train; a checkpoint holds them and indexing reads like training."""
    torch.manual_seed(0)
    head = CIEAHead(CIEAConfig.for_backbone(bundled, dropout=0.0, adapter_rank=4)).eval()
    reader = head.attach_adapter(bundled)
    assert reader.text_model is not bundled.text_model and reader.image_model is bundled.image_model
    assert not any("lora" in n for n, _ in bundled.text_model.named_parameters())
    trainable = {n for n, p in reader.text_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {id(p) for p in head.adapter.parameters()} == {id(p) for p in reader.text_model.parameters()
                                                          if p.requires_grad}

    tokens = bundled.embed_tokens(["A frog on a red ball."])
    before = bundled.encode_token_states(tokens.embeddings, tokens.attention_mask).detach().clone()
    with torch.no_grad():  # LoRA's B starts at zero: the adapted model starts as the frozen one
        torch.testing.assert_close(reader.encode_token_states(tokens.embeddings, tokens.attention_mask), before)
        for module in head.adapter:
            module.weight.normal_(std=0.05)
        adapted = reader.encode_token_states(tokens.embeddings, tokens.attention_mask)
        assert (adapted - before).abs().max() > 1e-3
        torch.testing.assert_close(bundled.encode_token_states(tokens.embeddings, tokens.attention_mask), before)

    rng = np.random.default_rng(0)
    patches = rng.normal(size=(3, bundled.num_patches, bundled.patch_dim)).astype(np.float32)
    captions = ["A frog.", "A red ball.", "A boat."]
    trained = encode_ciea_documents(reader, head, patches, captions, bundled.encode_text(captions))
    checkpoint = save_checkpoint(tmp_path / "ciea", head, {"head": dataclasses.asdict(head.config)})
    assert any(k.startswith("adapter.") for k in checkpoint.state)
    assert checkpoint.path.stat().st_size < 30 * 2**20
    retriever = CIEARetriever(bundled, checkpoint=load_checkpoint(tmp_path / "ciea"))
    np.testing.assert_allclose(retriever.encode_patches(patches, captions)[0], trained, atol=1e-5)
    unadapted = encode_ciea_documents(bundled, head, patches, captions, bundled.encode_text(captions))
    assert np.abs(unadapted - trained).max() > 1e-4  # the adapter is what made the difference


def test_training_with_an_adapter_moves_its_weights(bundled):
    split = synthetic_split(bundled, image_only=False)
    config = TrainConfig(epochs=1, batch_size=8, lr=3e-3, seed=0, ciea={"adapter_rank": 4})
    head, extra, _ = train_ciea(bundled, split, [split], config, progress=False)
    assert extra["head"]["adapter_rank"] == 4
    assert max(float(m.weight.detach().abs().max()) for m in head.adapter[1::2]) > 0  # every B started at zero
    assert not any("lora" in n for n, _ in bundled.text_model.named_parameters())


def test_dev_selection_weighs_corpora_alike_and_encodes_each_corpus_once(monkeypatch):
    import types

    import ciea.train as training

    scenes, emoji = object(), object()  # the features one corpus's per-kind dev sets share
    devs = [types.SimpleNamespace(name=name, features=features, query_vectors=lambda backbone: None)
            for name, features in [("scenes/caption", scenes), ("scenes/binding", scenes), ("scenes/count", scenes),
                                   ("emoji/name", emoji)]]
    values = {"scenes/caption": 0.9, "scenes/binding": 0.8, "scenes/count": 1.0, "emoji/name": 0.1}
    monkeypatch.setattr(training, "dev_mrr", lambda dev, queries, documents: values[dev.name])
    encoded = []
    score = training.mean_dev_mrr(devs, None, lambda dev: encoded.append(dev.name) or np.zeros(1))
    assert score == pytest.approx((0.9 + 0.1) / 2)  # not 0.7, the plain mean over the four sets
    assert encoded == ["scenes/caption", "emoji/name"]

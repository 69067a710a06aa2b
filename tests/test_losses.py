"""Losses against hand computations (math.exp / math.log on tiny unit vectors)."""

from __future__ import annotations

import math

import pytest
import torch

from ciea.losses import (
    CIEALossOutput,
    HardNegatives,
    LogitScale,
    ciea_loss,
    complementary_query_ids,
    gcl_loss,
    has_content,
    info_nce,
    masked_info_nce,
)


def ce(target: float, others: list[float]) -> float:
    """-log softmax of ``target`` among ``target`` + ``others`` (logits already scaled)."""
    return -target + math.log(math.exp(target) + sum(math.exp(o) for o in others))


def dot(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return sum(x * y for x, y in zip(a, b))


def unit(angle: float) -> tuple[float, float]:
    return (math.cos(angle), math.sin(angle))


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# Three queries and documents in 3-D: S[i][j] = q_i . d_j =
#   [[0.6, 0.0, 0.8],
#    [0.8, 0.6, 0.0],
#    [0.0, 0.8, 0.6]]
Q3 = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
D3 = [(0.6, 0.8, 0.0), (0.0, 0.6, 0.8), (0.8, 0.0, 0.6)]


def test_info_nce_two_pairs_matches_hand_computation():
    # q1=(1,0), q2=(0,1); d1=(0.6,0.8), d2=(0,1): q.d = [[0.6, 0], [0.8, 1]]; scale 2.
    q, d = t([[1, 0], [0, 1]]), t([[0.6, 0.8], [0, 1]])
    q_to_d = (ce(1.2, [0.0]) + ce(2.0, [1.6])) / 2
    d_to_q = (ce(1.2, [1.6]) + ce(2.0, [0.0])) / 2
    assert info_nce(q, d, 2.0, symmetric=False).item() == pytest.approx(q_to_d, abs=1e-12)
    assert info_nce(q, d, 2.0).item() == pytest.approx((q_to_d + d_to_q) / 2, abs=1e-12)
    assert info_nce(q, d, torch.tensor(2.0, dtype=torch.float64)).item() == pytest.approx(
        (q_to_d + d_to_q) / 2, abs=1e-12)
    assert q_to_d != pytest.approx(d_to_q)  # the two directions really differ here


def test_hard_negatives_join_the_query_side_only_unless_relevant():
    # same pairs as above plus one mined negative h=(0.8, 0.6): q.h = [0.8, 0.6]; scale 2.
    q, d, h = t([[1, 0], [0, 1]]), t([[0.6, 0.8], [0, 1]]), t([[0.8, 0.6]])
    hard = HardNegatives(h, torch.tensor([[False], [True]]))  # relevant to q2: not its negative
    q_to_d = (ce(1.2, [0.0, 1.6]) + ce(2.0, [1.6])) / 2
    assert info_nce(q, d, 2.0, symmetric=False, hard_negatives=hard).item() == pytest.approx(q_to_d, abs=1e-12)
    d_to_q = (ce(1.2, [1.6]) + ce(2.0, [0.0])) / 2  # document -> query: no negatives added
    assert info_nce(q, d, 2.0, hard_negatives=hard).item() == pytest.approx((q_to_d + d_to_q) / 2, abs=1e-12)
    everything_relevant = HardNegatives(h, torch.ones(2, 1, dtype=torch.bool))
    assert info_nce(q, d, 2.0, hard_negatives=everything_relevant).item() == pytest.approx(
        info_nce(q, d, 2.0).item(), abs=1e-12)
    image, text, fused = t(Q3), t(D3), t([(0.0, 0.6, 0.8), (0.8, 0.0, 0.6), (0.6, 0.8, 0.0)])
    harder = gcl_loss(image, text, fused, 2.0, hard_negatives=HardNegatives(t([(1.0, 0, 0)]),
                                                                            torch.zeros(3, 1, dtype=torch.bool)))
    assert harder.item() > gcl_loss(image, text, fused, 2.0).item()  # one more negative for every anchor


def test_info_nce_false_negatives_leave_both_denominators():
    q, d = t(Q3), t(D3)
    s = 2.0
    plain_q = (ce(1.2, [0.0, 1.6]) + ce(1.2, [1.6, 0.0]) + ce(1.2, [0.0, 1.6])) / 3
    plain_d = (ce(1.2, [1.6, 0.0]) + ce(1.2, [0.0, 1.6]) + ce(1.2, [1.6, 0.0])) / 3
    assert info_nce(q, d, s).item() == pytest.approx((plain_q + plain_d) / 2, abs=1e-12)

    fn = torch.zeros(3, 3, dtype=torch.bool)
    fn[0, 2] = True  # document 3 is also relevant to query 1
    # query 1 loses d3 (logit 1.6); document 3 (column 3 of S: 0.8, 0, 0.6) loses query 1.
    masked_q = (ce(1.2, [0.0]) + ce(1.2, [1.6, 0.0]) + ce(1.2, [0.0, 1.6])) / 3
    masked_d = (ce(1.2, [1.6, 0.0]) + ce(1.2, [0.0, 1.6]) + ce(1.2, [0.0])) / 3
    assert info_nce(q, d, s, false_negatives=fn, symmetric=False).item() == pytest.approx(masked_q, abs=1e-12)
    assert info_nce(q, d, s, false_negatives=fn).item() == pytest.approx((masked_q + masked_d) / 2, abs=1e-12)


def test_info_nce_refuses_a_masked_diagonal():
    fn = torch.zeros(3, 3, dtype=torch.bool)
    fn[1, 1] = True
    with pytest.raises(ValueError, match="diagonal"):
        info_nce(t(Q3), t(D3), 2.0, false_negatives=fn)


def test_masked_info_nce_drops_masked_candidates_and_guards_the_target():
    q, c = t(Q3[:2]), t(D3)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    expected = (ce(0.6 * 3, [0.0]) + ce(0.0, [0.8 * 3, 0.6 * 3])) / 2  # row 2 targets column 3
    got = masked_info_nce(q, c, 3.0, torch.tensor([0, 2]), mask)
    assert got.item() == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="target"):
        masked_info_nce(q, c, 3.0, torch.tensor([2, 0]), mask)


def _ciea_inputs():
    """B=3: documents 1 and 2 have images, document 3 is text-only."""
    queries, documents = t(Q3), t(D3)
    comp = t([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    image_sides = t([[0.6, 0.8, 0.0], [0.8, 0.6, 0.0], [1.0, 0.0, 0.0]])
    return queries, documents, comp, image_sides


def test_ciea_loss_hand_computed_two_rows():
    queries, documents, comp, image_sides = _ciea_inputs()
    s, lam = 2.0, 0.5
    out = ciea_loss(queries, documents, comp, image_sides, s, lam=lam,
                    comp_rows=torch.tensor([True, True, False]),
                    image_columns=torch.tensor([True, True, False]))
    assert isinstance(out, CIEALossOutput)
    # comp . image side over the image columns 1-2 only: row 1 (0.6, 0.8), row 2 (0.8, 0.6).
    l_comp = (ce(1.2, [1.6]) + ce(1.2, [1.6])) / 2
    l_c = (ce(1.2, [0.0, 1.6]) + ce(1.2, [1.6, 0.0]) + ce(1.2, [0.0, 1.6])) / 3
    assert out.complementary.item() == pytest.approx(l_comp, abs=1e-12)
    assert out.contrastive.item() == pytest.approx(l_c, abs=1e-12)
    assert out.total.item() == pytest.approx(l_c + lam * l_comp, abs=1e-12)
    # The text-only column (image side (1,0,0) would give row 1 a logit of 2.0) is excluded.
    with_column_3 = (ce(1.2, [1.6, 2.0]) + ce(1.2, [1.6, 0.0])) / 2
    assert out.complementary.item() != pytest.approx(with_column_3)


def test_ciea_loss_only_comp_rows_contribute_and_false_negatives_apply():
    queries, documents, comp, image_sides = _ciea_inputs()
    image_columns = torch.tensor([True, True, False])
    one_row = ciea_loss(queries, documents, comp, image_sides, 2.0,
                        comp_rows=torch.tensor([True, False, False]), image_columns=image_columns)
    assert one_row.complementary.item() == pytest.approx(ce(1.2, [1.6]), abs=1e-12)

    # Row 2's q_comp, and row/column 3's image side, do not take part: garbage there is harmless.
    comp_bad, sides_bad = comp.clone(), image_sides.clone()
    comp_bad[1] = float("nan")
    sides_bad[2] = float("nan")
    comp_bad.requires_grad_(True)
    again = ciea_loss(queries, documents, comp_bad, sides_bad, 2.0,
                      comp_rows=torch.tensor([True, False, False]), image_columns=image_columns)
    assert again.complementary.item() == pytest.approx(ce(1.2, [1.6]), abs=1e-12)
    again.total.backward()
    assert torch.isfinite(comp_bad.grad).all()

    fn = torch.zeros(3, 3, dtype=torch.bool)
    fn[0, 1] = True  # document 2 also answers query 1: row 1 keeps only its positive -> term 0
    masked = ciea_loss(queries, documents, comp, image_sides, 2.0, false_negatives=fn,
                       comp_rows=torch.tensor([True, True, False]), image_columns=image_columns)
    assert masked.complementary.item() == pytest.approx((0.0 + ce(1.2, [1.6])) / 2, abs=1e-12)
    assert masked.contrastive.item() == pytest.approx(
        (ce(1.2, [0.8 * 2]) + ce(1.2, [1.6, 0.0]) + ce(1.2, [0.0, 1.6])) / 3, abs=1e-12)


def test_ciea_loss_without_qualifying_rows_is_zero_and_differentiable():
    queries, documents, comp, image_sides = _ciea_inputs()
    queries.requires_grad_(True)
    comp = comp.clone()
    comp[0] = float("nan")  # an empty q_comp normalised to NaN: must not leak
    comp.requires_grad_(True)
    out = ciea_loss(queries, documents, comp, image_sides, 2.0,
                    comp_rows=torch.zeros(3, dtype=torch.bool),
                    image_columns=torch.tensor([True, True, False]))
    assert out.complementary.item() == 0.0
    assert out.total.item() == pytest.approx(out.contrastive.item(), abs=1e-12)
    out.total.backward()
    assert torch.isfinite(queries.grad).all() and queries.grad.abs().sum() > 0
    assert torch.equal(comp.grad, torch.zeros_like(comp))


def test_ciea_loss_refuses_a_comp_row_without_image():
    queries, documents, comp, image_sides = _ciea_inputs()
    with pytest.raises(ValueError, match="no image"):
        ciea_loss(queries, documents, comp, image_sides, 2.0,
                  comp_rows=torch.tensor([False, False, True]),
                  image_columns=torch.tensor([True, True, False]))


def test_complementary_query_ids():
    cls, sep, pad = 101, 102, 0
    specials = {cls, sep, pad}
    query = [cls, 5, 7, 5, 9, 8, sep, pad, pad]
    caption = [cls, 5, 8, 42, sep]
    assert complementary_query_ids(query, caption, specials) == [cls, 7, 9, sep, pad, pad]
    assert complementary_query_ids([9, 7, 3], [], specials) == [9, 7, 3]
    only_specials = complementary_query_ids([cls, 5, 8, sep], caption, specials)
    assert only_specials == [cls, sep]
    assert not has_content(only_specials, specials)
    assert has_content([cls, 7, sep], specials)
    assert not has_content([], specials)


def _gcl_hand(image, text, fused, scale):
    """Independent GCL: 6 directions x N anchors, anchor and its other positive masked."""
    n = len(image)
    embeddings = [image, text, fused]
    everything = [(m, k) for m in range(3) for k in range(n)]
    terms = []
    for m in range(3):
        for k in range(n):
            anchor = embeddings[m][k]
            for p in range(3):
                if p == m:
                    continue
                other = 3 - m - p
                allowed = [(mm, kk) for mm, kk in everything if (mm, kk) not in {(m, k), (other, k)}]
                target = scale * dot(anchor, embeddings[p][k])
                negatives = [scale * dot(anchor, embeddings[mm][kk]) for mm, kk in allowed
                             if (mm, kk) != (p, k)]
                terms.append(ce(target, negatives))
    assert len(terms) == 6 * n
    return sum(terms) / len(terms)


def test_gcl_loss_matches_hand_computation():
    image = [unit(0.0), unit(1.5)]
    text = [unit(0.3), unit(1.9)]
    fused = [unit(0.1), unit(1.2)]
    got = gcl_loss(t(image), t(text), t(fused), 3.0)
    assert got.item() == pytest.approx(_gcl_hand(image, text, fused, 3.0), abs=1e-12)


def test_gcl_loss_never_counts_self_or_the_other_positive():
    # N=1: after masking the anchor and its other positive only the positive is left, so
    # every term is exactly 0 whatever the vectors (self similarity 1 would make it > 0).
    got = gcl_loss(t([unit(0.0)]), t([unit(2.0)]), t([unit(-1.0)]), 50.0)
    assert got.item() == pytest.approx(0.0, abs=1e-12)


def test_gcl_loss_reaches_its_minimum_for_aligned_orthogonal_pairs():
    e1, e2 = (1.0, 0.0), (0.0, 1.0)
    same = t([e1, e2])
    previous = math.inf
    for scale in (1.0, 5.0, 20.0):
        # Each term: positive logit s, three negatives at 0 (the other pair's three vectors).
        value = gcl_loss(same, same.clone(), same.clone(), scale).item()
        assert value == pytest.approx(math.log(1 + 3 * math.exp(-scale)), abs=1e-12)
        assert value < previous
        previous = value
    assert previous < 1e-7


def test_gcl_false_negatives_drop_the_other_pairs_embeddings():
    image = [unit(0.0), unit(1.5), unit(3.0)]
    text = [unit(0.3), unit(1.9), unit(2.7)]
    fused = [unit(0.1), unit(1.2), unit(2.2)]
    fn = torch.zeros(3, 3, dtype=torch.bool)
    fn[0, 1] = fn[1, 0] = True  # pairs 0 and 1 point at the same document
    got = gcl_loss(t(image), t(text), t(fused), 3.0, false_negatives=fn).item()
    # Pairs 0 and 1 only compete with pair 2; pair 2 with both: the hand form, term by term.
    n, emb = 3, [image, text, fused]
    terms = []
    for m in range(3):
        for k in range(n):
            for p in range(3):
                if p == m:
                    continue
                other = 3 - m - p
                negatives = [3.0 * dot(emb[m][k], emb[mm][kk]) for mm in range(3) for kk in range(n)
                             if (mm, kk) not in {(m, k), (other, k), (p, k)} and not fn[k, kk]]
                terms.append(ce(3.0 * dot(emb[m][k], emb[p][k]), negatives))
    assert got == pytest.approx(sum(terms) / len(terms), abs=1e-12)
    assert got < gcl_loss(t(image), t(text), t(fused), 3.0).item()
    with pytest.raises(ValueError, match="diagonal"):
        gcl_loss(t(image), t(text), t(fused), 3.0, false_negatives=torch.eye(3, dtype=torch.bool))


def test_logit_scale_init_clamp_and_gradient():
    scale = LogitScale()
    value = scale()
    assert value.item() == pytest.approx(100.0, abs=1e-4) and value.item() <= 100.0
    value.backward()
    # d exp(p) / dp = exp(p): the gradient flows even at the cap.
    assert scale.log_scale.grad.item() == pytest.approx(100.0, abs=1e-3)

    assert LogitScale(init_temperature=0.07)().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with pytest.raises(ValueError):
        LogitScale(init_temperature=0.005)

    with torch.no_grad():
        scale.log_scale.fill_(math.log(200.0))
    assert scale().item() == 100.0
    scale.clamp_()
    scale.log_scale.grad = None
    scale().backward()
    assert scale.log_scale.grad.item() == pytest.approx(100.0, abs=1e-3)

"""The scenes probe kinds (binding, spatial, count, unseen): exact relevance on hand-built layouts,
the full probed set that `build-assets --corpus scenes` writes (sizes, hard negatives,
held-out objects, text <-> judgement agreement), the base kinds left as they were, recoloured
rendering, and per-kind evaluation.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from ciea.data import scene_probes as sp
from ciea.data import scenes as sc
from ciea.data.schema import load_queries

from test_scenes import REAL_STAMPS, make_stamps

#: A tiny build with one group of every probe kind per split (6 primaries: 4 held out as unseen objects, 2 left
#: to be probe primaries; seed 3 fits the tiny stamps).
PROBED = dict(seed=3, n_primaries=6, scenes_per_split={"train": 2, "dev": 1, "test": 1}, three_object_fraction=0.5,
              probe_groups={k: {"train": 0 if k == "unseen" else 1, "dev": 1, "test": 1} for k in sp.PROBE_KINDS},
              unseen_objects={"dev": 2, "test": 2})


def obj(name: str, article: str = "a") -> sc.SceneObject:
    return sc.SceneObject(name, article, name, f"things/{name}.png", f"thumbs/{name}.png", f"{article.title()} {name}.")


def put(name: str, x: int, y: int, w: int = 40, h: int = 40, color: str | None = None,
        role: str = "secondary") -> sc.PlacedObject:
    return sc.PlacedObject(f"things/{name}.png", f"thumbs/{name}.png", name, role, x, y, w, h, color)


def scene(scene_id: str, probe: str, primary: str, *secondaries: sc.PlacedObject, split: str = "test",
          at: tuple[int, int, int, int] = (100, 100, 60, 60)) -> sc.SceneLayout:
    return sc.SceneLayout(scene_id, split, 256, sc.Background("plain", (250, 250, 250)),
                          (put(primary, *at, role="primary"), *secondaries), probe)


OBJECTS = [obj(n) for n in ("dog", "cat", "kite", "drum", "lemon")] + [obj("owl", "an")]


def judged(layouts: list[sc.SceneLayout], text: str, split: str = "test") -> set[str]:
    """The scenes judged relevant to the probe query with this text."""
    queries, qrels = sp.probe_queries(layouts, OBJECTS)
    matches = [q for q in queries[split] if q.text == text]
    assert len(matches) == 1, (text, [q.text for q in queries[split]])
    return set(qrels[split][matches[0].qid])


# ----------------------------------------------------------------------------- hand-built layouts


def test_binding_a_blue_kite_is_not_a_red_kite():
    red_kite = scene("s1", "binding", "dog", put("kite", 10, 10, color="red"), put("drum", 180, 10, color="blue"))
    blue_kite = scene("s2", "binding", "dog", put("kite", 10, 10, color="blue"), put("drum", 180, 10, color="red"))
    plain_kite = scene("s3", "", "dog", put("kite", 10, 10))  # a base scene: the kite in its own colours
    other_primary = scene("s4", "", "cat", put("kite", 10, 10, color="red"))
    layouts = [red_kite, blue_kite, plain_kite, other_primary]
    assert judged(layouts, "a dog beside a red kite") == {"s1"}
    assert judged(layouts, "a dog beside a blue kite") == {"s2"}
    assert judged(layouts, "a dog beside a red drum") == {"s2"}  # s1 holds a red object, but not a drum
    assert not sp.matches("binding", blue_kite, ("dog", "kite", "red"))
    assert not sp.matches("binding", plain_kite, ("dog", "kite", "red"))


def test_spatial_the_mirrored_layout_is_not_relevant():
    left = scene("s1", "spatial", "dog", put("kite", 20, 110), put("owl", 110, 20))  # kite left, owl above
    mirrored = dataclasses.replace(sp.mirror_layout(left), scene_id="s2")
    assert sp.items_of(left) == [("dog", "kite", "left"), ("dog", "owl", "above")]
    assert sp.items_of(mirrored) == [("dog", "kite", "right"), ("dog", "owl", "below")]
    layouts = [left, mirrored]
    assert judged(layouts, "a kite to the left of a dog") == {"s1"}
    assert judged(layouts, "a kite to the right of a dog") == {"s2"}
    assert judged(layouts, "an owl above a dog") == {"s1"}
    assert judged(layouts, "an owl below a dog") == {"s2"}


def test_spatial_relations_are_strict_box_sides():
    dog = put("dog", 100, 100, 60, 60, role="primary")
    assert sp.holds("left", put("kite", 60, 0), dog)  # right edge 100 touches dog's left edge 100
    assert not sp.holds("left", put("kite", 61, 0), dog)  # one pixel of overlap: not wholly left
    assert sp.holds("below", put("kite", 0, 160), dog) and not sp.holds("above", put("kite", 0, 160), dog)
    diagonal = scene("s1", "spatial", "dog", put("kite", 20, 20))  # up and to the left: two relations
    with pytest.raises(ValueError, match="relation"):
        sp.items_of(diagonal)
    with pytest.raises(ValueError, match="unknown relation"):
        sp.holds("behind", put("kite", 0, 0), dog)


def test_count_one_or_three_kites_are_not_two():
    layouts = [scene(f"s{n}", "count", "dog", *[put("kite", 10 + 45 * i, 10) for i in range(n)]) for n in (1, 2, 3)]
    layouts.append(scene("s9", "", "cat", put("kite", 10, 10), put("kite", 60, 10)))  # two kites, another primary
    assert judged(layouts, "a dog with two kites") == {"s2"}
    assert judged(layouts, "a dog with one kite") == {"s1"}
    assert judged(layouts, "a dog with three kites") == {"s3"}


def test_unseen_needs_the_object_as_a_secondary_of_that_primary():
    layouts = [scene("s1", "unseen", "dog", put("lemon", 10, 10), put("owl", 180, 10)),
               scene("s2", "", "lemon", put("dog", 10, 10)),  # the roles reversed: not "a dog beside a lemon"
               scene("s3", "", "dog", put("kite", 10, 10))]
    assert judged(layouts, "a dog beside a lemon") == {"s1"}
    assert judged(layouts, "a dog beside an owl") == {"s1"}


def test_train_uses_training_templates_and_dev_test_the_held_out_one():
    layouts = [scene("s1", "binding", "dog", put("kite", 10, 10, color="red"), put("drum", 180, 10, color="blue"),
                     split="train")]
    queries, _ = sp.probe_queries(layouts, OBJECTS)
    texts = [q.text for q in queries["train"]]
    assert len(texts) == 2 * len(sp.TRAINING["binding"]) and not queries["test"]
    assert "a dog beside a red kite" not in texts and "a dog next to a red kite" in texts


def test_names_plurals_and_colour_words():
    assert [sp.plural(n) for n in ("kite", "bus", "butterfly", "glass of water", "woodlouse", "pair of pliers",
                                   "key", "Adelaide Rosella")] == \
        ["kites", "buses", "butterflies", "glasses of water", "woodlice", "pairs of pliers", "keys", "Adelaide Rosellas"]
    assert sp.coloured_phrase(obj("owl", "an"), "red") == "a red owl"
    assert sp.coloured_phrase(obj("cherries", "some"), "blue") == "some blue cherries"
    assert sp.has_colour_word("blackbird") and sp.has_colour_word("great blue heron")
    assert not sp.has_colour_word("dog") and not sp.has_colour_word("rose")
    assert not sp.countable(obj("cherries", "some")) and sp.countable(obj("owl", "an"))


def test_spatial_layouts_give_each_secondary_exactly_one_relation():
    rng = random.Random(0)
    objects = [obj("dog"), obj("kite"), obj("owl")]
    for trial in range(200):
        aspects = {o.doc_id: rng.uniform(0.4, 2.5) for o in objects}
        lay = sp.spatial_layout("test", *objects, aspects, random.Random(trial))
        items = sp.items_of(lay)  # raises unless each secondary stands in exactly one relation
        assert {it[2] for it in items} & {"left", "right"} and {it[2] for it in items} & {"above", "below"}
        assert [sp.MIRROR[it[2]] for it in items] == [it[2] for it in sp.items_of(sp.mirror_layout(lay))]
        for o in lay.objects:
            assert 0 <= o.x and o.x + o.w <= 256 and 0 <= o.y and o.y + o.h <= 256
        boxes = [(o.x, o.y, o.w, o.h) for o in lay.objects]
        assert all(sc._overlap(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:])


# ------------------------------------------------------- the full probed set (seed 0, real stamps)


@pytest.fixture(scope="module")
def probed_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probed-scenes")
    sc.build_scenes(REAL_STAMPS, out, seed=0, probes=True)
    return out


@pytest.fixture(scope="module")
def full_probed(probed_dir):
    layouts = sc.load_layouts(probed_dir)
    queries = {s: load_queries(probed_dir / f"queries_{s}.jsonl") for s in sc.SPLITS}
    qrels = {s: json.loads((probed_dir / f"qrels_{s}.json").read_text()) for s in sc.SPLITS}
    meta = json.loads((probed_dir / "meta.json").read_text())
    objects = sc.select_objects(sc._load_stamps(REAL_STAMPS))
    return layouts, queries, qrels, meta, objects


def test_shipped_assets_are_what_the_generator_writes(probed_dir):
    """The committed text assets are exactly a fresh probed build (seed 0, what `build-assets
    --corpus scenes` writes): deterministic and up to date."""
    shipped = Path(__file__).resolve().parent.parent / "assets" / "scenes"
    names = sorted(p.name for p in probed_dir.iterdir() if p.is_file())
    assert names == sorted(p.name for p in shipped.iterdir() if p.is_file() and not p.name.startswith("."))
    for name in names:
        assert (probed_dir / name).read_bytes() == (shipped / name).read_bytes(), name


def test_every_probe_kind_has_at_least_300_test_queries(full_probed):
    _, queries, _, meta, _ = full_probed
    counts = {s: Counter(q.kind for q in qs) for s, qs in queries.items()}  # a missing kind reads 0
    for kind in sp.PROBE_KINDS:
        assert counts["test"][kind] >= 300, kind
        assert counts["dev"][kind] >= 150, kind
        assert counts["train"][kind] == 0 if kind == "unseen" else counts["train"][kind] >= 1000, kind
    assert {k: dict(v) for k, v in counts.items()} == meta["queries"]


def _template_regex(template: str, slots: dict[str, str]) -> re.Pattern:
    pattern = re.escape(template).replace(re.escape("{a_pic}"), f"an? (?:{'|'.join(sc.PICTURE_WORDS)})")
    for slot, sub in slots.items():
        pattern = pattern.replace(re.escape("{" + slot + "}"), sub)
    return re.compile(f"^{pattern}$")


@functools.lru_cache
def _readings(kind: str, split: str, names: tuple[str, ...]) -> list[tuple[str, re.Pattern]]:
    """(relation or kind, compiled template) for each template a probe query of ``kind`` in
    ``split`` may use; made once per kind and split (building them is most of the test's time)."""
    alt = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    colours = "|".join(sc.PALETTE)
    slots = {"P": f"(?:a|an|some) (?P<P>{alt})", "S": f"(?:a|an|some) (?P<S>{alt})",
             "N": "(?P<N>one|two|three)", "Sn": f"(?P<Sn>{alt})"}
    if kind == "binding":
        slots["S"] = f"(?:a|an|some) (?P<C>{colours}) (?P<S>{alt})"
    table = sp.TRAINING if split == "train" else sp.HELD_OUT
    keys = sp.RELATIONS if kind == "spatial" else (kind,)
    return [(key, _template_regex(template, slots)) for key in keys for template in table[key]]


def parse_probe(kind: str, split: str, text: str, names: dict[str, str]) -> tuple:
    """(primary, secondary, attribute) named by a probe query's text, via the templates of its
    split; the text must read one way only. ``names``: every object name and plural -> name."""
    readings = set()
    for key, template in _readings(kind, split, tuple(names)):
        m = template.match(text)
        if not m:
            continue
        g = m.groupdict()
        if kind == "binding":
            readings.add((g["P"], g["S"], g["C"]))
        elif kind == "spatial":
            readings.add((g["P"], g["S"], key))
        elif kind == "count":
            readings.add((g["P"], names[g["Sn"]], {"one": 1, "two": 2, "three": 3}[g["N"]]))
        else:
            readings.add((g["P"], g["S"]))
    assert len(readings) == 1, f"{split} {kind} query {text!r} reads as {readings or 'nothing'}"
    return readings.pop()


def _side(o: sc.PlacedObject, p: sc.PlacedObject) -> set[str]:
    """Sides of p's box that o lies wholly beyond (written apart from ``sp.holds``)."""
    sides = {"left": o.x + o.w <= p.x, "right": p.x + p.w <= o.x, "above": o.y + o.h <= p.y, "below": p.y + p.h <= o.y}
    return {k for k, v in sides.items() if v}


def test_probe_judgements_match_the_query_text_and_hard_negatives_exist(full_probed):
    layouts, queries, qrels, _, objects = full_probed
    names = {o.name: o.name for o in objects} | {sp.plural(o.name): o.name for o in objects}
    by_primary = defaultdict(list)
    for lay in layouts:
        by_primary[lay.primary.name].append(lay)
    boxes = {tuple((o.name, o.color, o.x, o.y, o.w, o.h) for o in l.objects) for l in layouts}
    checked = defaultdict(int)
    for split in sc.SPLITS:
        for q in queries[split]:
            if q.kind not in sp.PROBE_KINDS:
                continue
            item = parse_probe(q.kind, split, q.text, names)
            p, s = item[0], item[1]
            candidates = by_primary[p]
            with_s = [l for l in candidates if s in {o.name for o in l.secondaries}]
            if q.kind == "binding":
                expected = {l.scene_id for l in with_s if any(o.name == s and o.color == item[2] for o in l.secondaries)}
                # Hard negatives: the same S in another colour, and another object in this colour.
                assert any(l.scene_id not in expected for l in with_s), q
                assert any(l.scene_id not in expected and any(o.color == item[2] for o in l.secondaries)
                           for l in candidates), q
            elif q.kind == "spatial":
                expected = {l.scene_id for l in with_s if any(o.name == s and item[2] in _side(o, l.primary)
                                                              for o in l.secondaries)}
                for l in with_s:  # every relevant scene's mirror image is in the corpus and not relevant
                    if l.scene_id in expected:
                        mirror = sp.mirror_layout(l)
                        assert tuple((o.name, o.color, o.x, o.y, o.w, o.h) for o in mirror.objects) in boxes, q
                assert len(with_s) == 2 and len(expected) == 1, q
            elif q.kind == "count":
                expected = {l.scene_id for l in with_s if sum(o.name == s for o in l.secondaries) == item[2]}
                others = {sum(o.name == s for o in l.secondaries) for l in with_s} - {item[2]}
                assert others == {1, 2, 3} - {item[2]}, q  # two kites: one and three kites are there too
            else:
                expected = {l.scene_id for l in with_s}
            assert expected and set(qrels[split][q.qid]) == expected, q
            checked[q.kind] += 1
    assert set(checked) == set(sp.PROBE_KINDS)


def test_objects_named_together_are_shown_together_only_in_their_group(full_probed):
    """No scene outside a probe group shows both objects a probe query names, in any role, so no
    unjudged scene answers it; each group has its fixed number of scenes."""
    layouts, queries, qrels, _, _ = full_probed
    showing = defaultdict(set)
    for lay in layouts:
        for o in lay.names():
            showing[o].add(lay.scene_id)
    probe = {l.scene_id: l for l in layouts if l.probe}
    size = {"binding": 2, "spatial": 2, "count": 3, "unseen": 1}
    for lay in probe.values():
        for item in sp.items_of(lay):
            both = showing[item[0]] & showing[item[1]]
            assert {probe[d].probe for d in both if d in probe} == {lay.probe} and both <= set(probe), item
            assert len(both) == size[lay.probe], item


def test_unseen_objects_are_never_secondaries_in_train(full_probed):
    layouts, queries, _, meta, _ = full_probed
    held = meta["unseen_objects"]
    assert set(held) == {"dev", "test"} and not set(held["dev"]) & set(held["test"])
    assert len(held["test"]) >= 20
    secondaries = {s: {o.name for l in layouts if l.split == s for o in l.secondaries} for s in sc.SPLITS}
    assert not secondaries["train"] & (set(held["dev"]) | set(held["test"]))
    assert not secondaries["dev"] & set(held["test"])
    unseen_named = {o.name for l in layouts if l.probe == "unseen" and l.split == "test" for o in l.secondaries}
    assert unseen_named == set(held["test"])
    assert not [q for q in queries["train"] if q.kind == "unseen"]


def test_base_kinds_keep_their_scenes_queries_and_judgements(full_probed, probed_dir, tmp_path):
    """Probe scenes are appended: base files (the full_probed set) are a prefix of the probed ones;
    complementary judgements are unchanged; caption and image-only ones only gain probe scenes
    (of the caption's primary, showing the object)."""
    layouts, _, _, _, _ = full_probed
    sc.build_scenes(REAL_STAMPS, tmp_path, seed=0)
    for name in ["layouts.jsonl", "corpus.jsonl"] + [f"queries_{s}.jsonl" for s in sc.SPLITS]:
        base = (tmp_path / name).read_text().splitlines()
        full = (probed_dir / name).read_text().splitlines()
        assert full[:len(base)] == base and len(full) > len(base), name
    probe_ids = {l.scene_id for l in layouts if l.probe}
    assert min(probe_ids) > max(l.scene_id for l in layouts if not l.probe)
    for split in sc.SPLITS:
        base = json.loads((tmp_path / f"qrels_{split}.json").read_text())
        full = json.loads((probed_dir / f"qrels_{split}.json").read_text())
        for qid, rel in base.items():
            if "-img-" in qid or "-cap-" in qid:
                assert set(rel) <= set(full[qid]) and set(full[qid]) - set(rel) <= probe_ids, qid
            else:
                assert full[qid] == rel, qid


def test_image_only_objects_are_never_captioned(full_probed):
    """Probe primaries are base primaries, so an object a base image-only query asks about is named
    by no caption anywhere: text alone cannot find it (the flaw of the first probed build)."""
    layouts, queries, qrels, meta, objects = full_probed
    captioned = {l.primary.name for l in layouts}
    assert captioned == {l.primary.name for l in layouts if not l.probe}
    image_only = {o.name for l in layouts if not l.probe for o in l.secondaries}
    assert image_only and not image_only & captioned
    by_id = {l.scene_id: l for l in layouts}
    for split in sc.SPLITS:
        for q in queries[split]:
            if q.kind == "image-only":
                scenes = [by_id[d] for d in qrels[split][q.qid]]
                common = set.intersection(*(lay.names() for lay in scenes))  # the object asked about
                assert len(common) == 1 and common <= image_only, q.qid
                assert not any(lay.primary.name in common for lay in scenes), q.qid


# ----------------------------------------------------------------------------- tiny builds


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    base = tmp_path_factory.mktemp("probed")
    stamps = make_stamps(base / "stamps")
    bench = sc.build_scenes(stamps, base / "scenes", **PROBED)
    return stamps, base / "scenes", bench


def test_tiny_probe_build_is_deterministic_and_has_every_kind(probed, tmp_path):
    stamps, out, bench = probed
    sc.build_scenes(stamps, tmp_path, **PROBED)
    for name in ["layouts.jsonl", "corpus.jsonl", "meta.json"] + [f"{k}_{s}.{e}" for s in sc.SPLITS
                                                                  for k, e in (("queries", "jsonl"), ("qrels", "json"))]:
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name
    kinds = {q.kind for q in bench.queries["test"]}
    assert kinds == set(sc.KINDS) | set(sp.PROBE_KINDS)
    assert sc.load_layouts(out) == bench.layouts


def test_too_many_probe_groups_is_an_error_not_a_repeat(probed, tmp_path):
    stamps = probed[0]
    params = {**PROBED, "probe_groups": {"binding": {"train": 40, "dev": 0, "test": 0}}}
    with pytest.raises(ValueError, match="Too few objects for binding"):
        sc.build_scenes(stamps, tmp_path, **params)


def test_recoloured_objects_render_in_their_colour(probed):
    stamps, _, bench = probed
    drawn = 0
    for lay in (l for l in bench.layouts if l.probe == "binding"):
        pixels = np.asarray(sc.render_scene(lay, stamps)).astype(int)
        for o in lay.secondaries:
            box = pixels[o.y:o.y + o.h, o.x:o.x + o.w].reshape(-1, 3)
            close = np.abs(box - np.array(sc.PALETTE[o.color])).max(axis=1) <= 40
            assert close.mean() > 0.2, (lay.scene_id, o)  # the flat tiny shapes come out in the palette colour
            drawn += 1
    assert drawn >= 4


def test_eval_reports_each_probe_kind_separately(probed):
    from ciea.evaluate import Evaluator, QuerySet

    _, out, _ = probed
    query_set = QuerySet.shipped(out, "test")
    perfect = {qid: {doc: 1.0 for doc in docs} for qid, docs in query_set.qrels.items()}
    report = Evaluator.from_query_set(query_set).score_run(perfect)
    assert set(report) == {"all", *sc.KINDS, *sp.PROBE_KINDS}
    assert all(m["mrr@10"] == 1.0 for m in report.values())
    blind = {qid: {"no-such-scene": 1.0} for qid in query_set.qrels}
    assert Evaluator.from_query_set(query_set).score_run(blind)["binding"]["mrr@10"] == 0.0

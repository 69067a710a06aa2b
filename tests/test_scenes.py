"""The scenes benchmark generator: objects, splits, exact relevance, deterministic pixels.

A tiny stamps-like corpus made in tmp_path covers rendering; the shipped stamps corpus covers
the layout-only checks at full size (no images rendered).
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from ciea.data import scenes as sc
from ciea.data.schema import Document, load_corpus, write_jsonl
from ciea.evaluate import QuerySet

from conftest import draw_shape


def name_tokens(text: str) -> set[str]:
    """Group keys of the words of ``text`` (what a caption mentions)."""
    return {sc._token_key(w) for w in re.findall(r"[A-Za-z][A-Za-z'-]*", sc._STRIP_CHARS.sub("", text))}


REAL_STAMPS = Path(__file__).resolve().parent.parent / "assets" / "stamps"

# (description, shape, colour); the last rows must be rejected or merged.
TINY_STAMPS = [
    ("A cat.", "circle", (200, 40, 40)),
    ("A dog.", "square", (40, 200, 40)),
    ("An owl.", "triangle", (40, 40, 200)),
    ("A fox.", "circle", (200, 200, 40)),
    ("A red ball.", "circle", (220, 0, 0)),
    ("A kite.", "triangle", (0, 200, 200)),
    ("A lemon.", "circle", (240, 230, 0)),
    ("A bus.", "square", (250, 150, 0)),
    ("A frog.", "triangle", (20, 120, 20)),
    ("A hat.", "square", (90, 50, 20)),
    ("An apple.", "circle", (180, 0, 30)),
    ("A drum.", "square", (120, 0, 120)),
    ("A tent.", "triangle", (0, 90, 0)),
    ("A boat.", "square", (0, 0, 120)),
    ("A ladder.", "triangle", (160, 160, 160)),
    ("A swan.", "circle", (250, 250, 250)),
    ("A dog.", "circle", (10, 10, 10)),  # same name twice: one object, first doc id
    ("A ball.", "square", (1, 2, 3)),  # same head as "red ball": one object ("ball" wins)
    ("A lemon slice.", "circle", (3, 2, 1)),  # modifier is another object's head: dropped
    ("A kitten.", "circle", (5, 5, 5)),  # alias of cat: merged into the cat group
    ("The letter r.", "square", (0, 0, 0)),  # no article: not a clean noun
    ("A big old rusty red truck.", "square", (0, 0, 0)),  # over 4 words
    ("A camera.  Say Cheese!", "square", (0, 0, 0)),  # a second sentence
]
TINY_PARAMS = dict(n_primaries=4, scenes_per_split={"train": 3, "dev": 1, "test": 2}, probe_groups={})
# (probe scenes need more objects than the tiny stamps give at this size: tests/test_scene_probes.py)


def make_stamps(root: Path) -> Path:
    docs = []
    for i, (text, shape, colour) in enumerate(TINY_STAMPS):
        doc_id = f"things/s{i:02d}.png"
        rel = f"thumbs/{doc_id}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        draw_shape(shape, colour, 64 + 4 * i).save(root / rel)
        docs.append(Document(doc_id, text, rel, "things"))
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "corpus.jsonl", (d.__dict__ for d in docs))
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("scenes")
    stamps = make_stamps(base / "stamps")
    bench = sc.build_scenes(stamps, base / "out", seed=3, **TINY_PARAMS)
    return stamps, base / "out", bench


@pytest.fixture(scope="module")
def crowded(tiny, tmp_path_factory):
    """More primaries than the secondary pool can pair uniquely: combinations repeat within a split."""
    stamps = tiny[0]
    bench = sc.build_scenes(stamps, tmp_path_factory.mktemp("crowded"), seed=1, n_primaries=10,
                            scenes_per_split={"train": 3, "dev": 1, "test": 2}, probe_groups={})
    repeats = [l for l in bench.layouts if l.split == "train"]
    assert len({(l.primary.name, o.name) for l in repeats for o in l.secondaries}) < sum(
        len(l.secondaries) for l in repeats)
    return stamps, None, bench


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    out = tmp_path_factory.mktemp("real_scenes")
    return out, sc.build_scenes(REAL_STAMPS, out, seed=0)


def _strip_article(phrase: str) -> str:
    return re.sub(r"^(a|an|some) ", "", phrase)


@functools.lru_cache
def _template_regex(template: str) -> re.Pattern:
    pics = "|".join(sc.PICTURE_WORDS)
    pattern = re.escape(template)
    pattern = pattern.replace(re.escape("{a_pic}"), f"an? (?:{pics})").replace(re.escape("{pic}"), f"(?:{pics})")
    pattern = pattern.replace(re.escape("{P}"), "(?P<P>.+)").replace(re.escape("{S}"), "(?P<S>.+)")
    return re.compile(f"^{pattern}$")


def parse_query(split: str, kind: str, text: str) -> tuple[str | None, str | None]:
    """(primary name, secondary name) named by a query, via the templates of its split."""
    templates = (sc.TRAIN_TEMPLATES if split == "train" else sc.HELD_OUT_TEMPLATES)[kind]
    for template in templates:
        m = _template_regex(template).match(text)
        if m:
            g = m.groupdict()
            return (_strip_article(g["P"]) if "P" in g else None,
                    _strip_article(g["S"]) if "S" in g else None)
    raise AssertionError(f"{split} {kind} query {text!r} matches none of its templates")


def check_exact_relevance(bench: sc.ScenesBenchmark) -> None:
    # every scene id under what a query may name: its primary; primary and a secondary; any object
    with_primary, with_pair, showing = defaultdict(set), defaultdict(set), defaultdict(set)
    for l in bench.layouts:
        with_primary[l.primary.name].add(l.scene_id)
        for o in l.secondaries:
            with_pair[(l.primary.name, o.name)].add(l.scene_id)
        for name in l.names():
            showing[name].add(l.scene_id)
    for split in sc.SPLITS:
        assert bench.queries[split], split
        for q in bench.queries[split]:
            if q.kind not in sc.KINDS:
                continue  # probe kinds: tests/test_scene_probes.py
            primary, secondary = parse_query(split, q.kind, q.text)
            if q.kind == "caption":
                expected = with_primary.get(primary, set())
            elif q.kind == "complementary":
                expected = with_pair.get((primary, secondary), set())
            else:
                expected = showing.get(secondary, set())
            assert expected, q
            assert set(bench.qrels[split][q.qid]) == expected, q
            assert set(bench.qrels[split][q.qid].values()) == {1}


def combos(bench: sc.ScenesBenchmark, split: str) -> set[tuple[str, str]]:
    return {(l.primary.name, o.name) for l in bench.layouts if l.split == split for o in l.secondaries}


# ----------------------------------------------------------------------------- objects


def test_object_name_keeps_short_clean_nouns_only():
    assert sc.object_name("An elephant.") == ("elephant", "an")
    assert sc.object_name("Some cherries.") == ("cherries", "some")
    assert sc.object_name("A ripe, red tomato!") == ("ripe red tomato", "a")
    assert sc.object_name("A “Sierra Beauty” apple.") == ("Sierra Beauty apple", "a")
    for bad in ("The letter r.", "Zero.", "A camera.  Say Cheese!", "50 Japanese yen.",
                "A tower with a red flag.", "A spider playing soccer.", "A very big grey elephant."):
        assert sc.object_name(bad) is None, bad


def test_select_objects_gives_one_unambiguous_name_per_object(tiny):
    stamps, _, bench = tiny
    names = {o.name: o for o in bench.objects}
    assert set(names) == {"cat", "dog", "owl", "fox", "ball", "kite", "lemon", "bus", "frog", "hat",
                          "apple", "drum", "tent", "boat", "ladder", "swan"}
    assert names["dog"].doc_id == "things/s01.png"  # first doc id among stamps named "dog"
    assert names["cat"].description == "A cat."
    assert len({o.key for o in bench.objects}) == len(bench.objects)


def test_real_objects_have_unique_names_and_heads(real):
    _, bench = real
    objects = bench.objects
    assert len(objects) >= 200
    assert len({o.name.lower() for o in objects}) == len(objects)
    assert len({o.key for o in objects}) == len(objects)
    keys = {o.key for o in objects}
    for o in objects:  # no name uses another object's head as a modifier ("lemon slice")
        modifiers = {sc._token_key(w) for w in o.name.lower().split()[:-1]} - {"of"}
        assert not modifiers & (keys - {o.key}), o


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_files_and_pixels(tiny, tmp_path):
    stamps, out, bench = tiny
    sc.build_scenes(stamps, tmp_path / "again", seed=3, **TINY_PARAMS)
    for name in ["layouts.jsonl", "corpus.jsonl"] + [f"{k}_{s}.{e}" for s in sc.SPLITS
                                                      for k, e in (("queries", "jsonl"), ("qrels", "json"))]:
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    layout = sc.load_layouts(tmp_path / "again")[0]
    first = np.asarray(sc.render_scene(layout, stamps))
    sc._stamp_rgba.cache_clear()  # the second render reads the thumbnails afresh
    second = np.asarray(sc.render_scene(bench.layouts[0], stamps))
    assert first.shape == (256, 256, 3)
    assert np.array_equal(first, second)


def test_different_seed_different_layouts(tiny, tmp_path):
    stamps, out, _ = tiny
    sc.build_scenes(stamps, tmp_path / "other", seed=4, **TINY_PARAMS)
    assert (out / "layouts.jsonl").read_bytes() != (tmp_path / "other" / "layouts.jsonl").read_bytes()


def test_layout_round_trips_through_json(tiny):
    _, out, bench = tiny
    assert sc.load_layouts(out) == bench.layouts


# ----------------------------------------------------------------------------- rendering


def test_render_draws_each_object_in_its_box(tiny):
    stamps, _, bench = tiny
    drawn = {}
    for text, shape, colour in TINY_STAMPS:
        parsed = sc.object_name(text)
        if parsed:
            drawn.setdefault(parsed[0], (shape, colour))
    checked = 0
    for layout in bench.layouts[:6]:
        pixels = np.asarray(sc.render_scene(layout, stamps)).astype(int)
        # Later objects are drawn on top; check each box centre not covered by a later box.
        for i, obj in enumerate(layout.objects):
            cx, cy = obj.x + obj.w // 2, obj.y + obj.h // 2
            if any(o.x <= cx < o.x + o.w and o.y <= cy < o.y + o.h for o in layout.objects[i + 1:]):
                continue
            shape, colour = drawn[obj.name]
            if shape == "triangle":
                continue  # a triangle's box centre may be outside the drawing
            assert np.abs(pixels[cy, cx] - np.array(colour)).max() <= 12, (layout.scene_id, obj)
            checked += 1
    assert checked >= 6


def test_ensure_rendered_caches_where_the_corpus_points(tiny, tmp_path):
    stamps, out, bench = tiny
    cache = tmp_path / "cache"
    assert sc.ensure_rendered(out, stamps, progress=False, render_dir=cache) == len(bench.layouts)
    assert sc.ensure_rendered(out, stamps, progress=False, render_dir=cache) == 0
    assert len(list(cache.glob("scene-*.png"))) == len(bench.layouts)
    corpus = load_corpus(out.name, out.parent)
    doc = corpus.documents[0]
    assert doc.image == f"render/{doc.doc_id}.png" and corpus.image_path(doc).is_file()
    (cache / f"{doc.doc_id}.png").unlink()
    assert sc.ensure_rendered(out, stamps, progress=False, render_dir=cache) == 1


def test_render_one_survives_threads_rendering_the_same_scene(tiny, tmp_path):
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    stamps, out, bench = tiny
    fresh = tmp_path / "corpus"
    shutil.copytree(out, fresh, ignore=shutil.ignore_patterns(sc.RENDER_DIR))
    scene = bench.layouts[0].scene_id
    with ThreadPoolExecutor(8) as pool:  # the app's workers render a scene on demand, maybe at once
        paths = list(pool.map(lambda _: sc.render_one(fresh, stamps, scene), range(16)))
    assert len(set(paths)) == 1 and paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((fresh / sc.RENDER_DIR).glob("*.tmp.png"))


# ----------------------------------------------------------------------------- splits and relevance


@pytest.mark.parametrize("which", ["tiny", "crowded", "real"])
def test_splits_disjoint_and_combinations_unseen_in_train(which, request):
    bench = request.getfixturevalue(which)[-1]
    ids = [l.scene_id for l in bench.layouts]
    assert len(ids) == len(set(ids))
    by_split = {s: {l.scene_id for l in bench.layouts if l.split == s} for s in sc.SPLITS}
    assert all(by_split.values())
    assert sum(map(len, by_split.values())) == len(ids)
    assert {d.doc_id: d.category for d in bench.corpus} == {l.scene_id: l.split for l in bench.layouts}
    train = combos(bench, "train")
    assert not combos(bench, "test") & train
    assert not combos(bench, "dev") & train
    assert not combos(bench, "dev") & combos(bench, "test")
    # Objects do repeat across splits.
    primaries = {s: {l.primary.name for l in bench.layouts if l.split == s and not l.probe} for s in sc.SPLITS}
    assert primaries["train"] == primaries["test"]


@pytest.mark.parametrize("which", ["tiny", "crowded", "real"])
def test_relevance_is_exact_over_the_whole_corpus(which, request):
    check_exact_relevance(request.getfixturevalue(which)[-1])


def test_relevance_check_catches_a_missing_scene(tiny):
    """The exactness check above is able to fail."""
    bench = tiny[-1]
    q = next(q for q in bench.queries["test"] if q.kind == "image-only")
    broken = dict(bench.qrels["test"])
    broken[q.qid] = dict(list(broken[q.qid].items())[1:])
    bad = sc.ScenesBenchmark(bench.layouts, bench.corpus, bench.queries, {**bench.qrels, "test": broken})
    with pytest.raises(AssertionError):
        check_exact_relevance(bad)


@pytest.mark.parametrize("which", ["tiny", "crowded", "real"])
def test_captions_name_only_the_primary(which, request):
    bench = request.getfixturevalue(which)[-1]
    objects = {o.name: o for o in bench.objects}
    for layout in bench.layouts:
        caption = bench.corpus.get(layout.scene_id).text
        assert caption == objects[layout.primary.name].description
        tokens = name_tokens(caption)
        assert name_tokens(layout.primary.name) <= tokens
        for o in layout.secondaries:
            named = {objects[o.name].key, sc._token_key(o.name.split()[-1])}
            assert not named & tokens, (caption, o.name)
            assert not re.search(rf"\b{re.escape(o.name.lower())}\b", caption.lower()), (caption, o.name)
        assert layout.primary.role == "primary" and {o.role for o in layout.secondaries} == {"secondary"}


@pytest.mark.parametrize("which", ["tiny", "real"])
def test_queries_use_split_templates_and_differ_from_captions(which, request):
    bench = request.getfixturevalue(which)[-1]
    captions = {re.sub(r"[^a-z ]", "", d.text.lower()).strip() for d in bench.corpus}
    for split in sc.SPLITS:
        assert {q.kind for q in bench.queries[split]} >= set(sc.KINDS)
        assert len({q.qid for q in bench.queries[split]}) == len(bench.queries[split])
        for q in bench.queries[split]:
            assert re.sub(r"[^a-z ]", "", q.text.lower()).strip() not in captions, q
            if q.kind == "complementary":
                assert (" beside " in q.text) == (split != "train"), q


def test_layout_geometry_keeps_objects_recognisable(real):
    _, bench = real
    for layout in bench.layouts:
        assert 2 <= len(layout.objects) <= (4 if layout.probe == "count" else 3)
        for o in layout.objects:
            assert 0 <= o.x and o.x + o.w <= layout.size and 0 <= o.y and o.y + o.h <= layout.size
        p = layout.primary
        for o in layout.secondaries:
            assert o.w * o.h < p.w * p.h
        for i, a in enumerate(layout.objects):
            for b in layout.objects[i + 1:]:
                assert sc._overlap((a.x, a.y, a.w, a.h), (b.x, b.y, b.w, b.h)) <= 0.08 * min(a.w * a.h, b.w * b.h) + 1


def test_real_sizes_match_the_docstring(real):
    out, bench = real
    counts = bench.counts()
    base = [l for l in bench.layouts if not l.probe]
    assert counts["primaries"] == 150
    assert {s: sum(l.split == s for l in base) for s in sc.SPLITS} == {"train": 1200, "dev": 300, "test": 600}
    assert counts["scenes"] == {"train": 1200, "dev": 300, "test": 600}  # no probes unless asked for
    assert {k: counts["queries"]["test"][k] for k in sc.KINDS} == {"caption": 150, "complementary": 1050,
                                                                 "image-only": 138}
    three = sum(len(l.objects) == 3 for l in base)
    assert 0.6 < three / len(base) < 0.9
    meta = json.loads((out / "meta.json").read_text())
    assert meta["scenes"] == counts["scenes"] and meta["seed"] == 0
    shipped = QuerySet.shipped(out, "test")
    assert shipped.qrels == bench.qrels["test"]
    assert [q.qid for q in shipped.queries] == [q.qid for q in bench.queries["test"]]
    # Every primary has the same number of scenes in each split.
    per = defaultdict(lambda: defaultdict(int))
    for l in base:
        per[l.primary.name][l.split] += 1
    assert all(dict(v) == {"train": 8, "dev": 2, "test": 4} for v in per.values())


def test_too_few_secondaries_is_an_error_not_a_leak(tiny, tmp_path):
    with pytest.raises(ValueError, match="disjoint across splits"):
        sc.build_scenes(tiny[0], tmp_path / "x", seed=0, n_primaries=13,
                        scenes_per_split={"train": 3, "dev": 1, "test": 2}, three_object_fraction=1.0)

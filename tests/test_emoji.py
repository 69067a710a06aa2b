"""The emoji corpora: builders on a tiny fixture in each source's real format, concept splits,
and relevance of the natural queries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ciea.data import emoji as E
from ciea.data.schema import load_corpus, load_queries

SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72"><circle cx="36" cy="36" r="30" '
       'fill="{colour}"/></svg>')
NOTO_BODY = '<circle cx="64" cy="64" r="50" fill="{colour}"/>'

#: (hexcode, emoji, name, group, subgroup, CLDR tags, OpenMoji tags, emojilib keywords, colour)
FIXTURE = [
    ("1F34C", "\U0001F34C", "banana", "food-drink", "food-fruit", ["fruit", "potassium"], ["yellow"],
     ["banana", "fruit", "monkey"], "#ff0"),
    ("1F347", "\U0001F347", "grapes", "food-drink", "food-fruit", ["fruit", "grape"], ["purple"],
     ["grapes", "fruit", "wine"], "#808"),
    ("1F346", "\U0001F346", "eggplant", "food-drink", "food-vegetable", ["aubergine", "vegetable"], ["purple"],
     ["eggplant", "vegetable"], "#808"),
    ("1F34E", "\U0001F34E", "red apple", "food-drink", "food-fruit", ["apple", "fruit", "red"], [],
     ["apple", "fruit"], "#f00"),
    ("1F9D1-200D-1F33E", "\U0001F9D1\u200D\U0001F33E", "farmer", "people-body", "person-role", ["farmer", "rancher"],
     ["green"], ["farmer"], "#0a0"),
    ("1F468-200D-1F33E", "\U0001F468\u200D\U0001F33E", "man farmer", "people-body", "person-role", ["farmer", "man"],
     ["green"], [], "#0a0"),
]


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """A node_modules folder with the five packages' files in their real layouts."""
    root = tmp_path_factory.mktemp("node_modules")
    openmoji = []
    for hexcode, char, name, group, sub, tags, om_tags, _, colour in FIXTURE:
        openmoji.append({"emoji": char, "hexcode": hexcode, "group": group, "subgroups": sub, "annotation": name,
                         "tags": ", ".join(tags), "openmoji_tags": ", ".join(om_tags), "skintone": ""})
        _write(root / "openmoji/color/svg" / f"{hexcode}.svg", SVG.format(colour=colour))
    # a skin-tone variant, which must be left out
    openmoji.append({"emoji": "x", "hexcode": "1F9D1-1F3FB-200D-1F33E", "group": "people-body",
                     "subgroups": "person-role", "annotation": "farmer: light skin tone", "tags": "farmer",
                     "openmoji_tags": "", "skintone": "1"})
    _write(root / "openmoji/color/svg/1F9D1-1F3FB-200D-1F33E.svg", SVG.format(colour="#fc9"))
    _write(root / "openmoji/data/openmoji.json", json.dumps(openmoji))
    _write(root / "openmoji/LICENSE.txt", "CC BY-SA 4.0")
    _write(root / "emojibase-data/en/data.json", json.dumps(
        [{"label": name, "hexcode": hexcode, "tags": tags, "emoji": char, "group": 4, "subgroup": 42}
         for hexcode, char, name, _, _, tags, _, _, _ in FIXTURE]))
    _write(root / "emojilib/dist/emoji-en-US.json", json.dumps({char: kw for _, char, _, _, _, _, _, kw, _ in FIXTURE}))
    icons = {name.replace(" ", "-"): {"body": NOTO_BODY.format(colour=colour)}
             for _, _, name, *_, colour in FIXTURE}
    _write(root / "@iconify-json/noto/icons.json", json.dumps({"prefix": "noto", "icons": icons, "width": 128,
                                                              "height": 128}))
    _write(root / "@iconify-json/noto/chars.json", json.dumps(
        {hexcode.lower(): name.replace(" ", "-") for hexcode, _, name, *_ in FIXTURE}))
    for hexcode, *_, colour in FIXTURE:
        _write(root / "@twemoji/svg" / f"{E.normalise_hex(hexcode)}.svg", SVG.format(colour=colour))
    for name, version in E.NPM_PACKAGES.items():
        _write(root / name / "package.json", json.dumps({"name": name, "version": version}))
    return root


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_is_deterministic_and_complete(sources, tmp_path, monkeypatch):
    monkeypatch.setattr(E, "concept_split", lambda key: "train")  # every fixture concept trains
    first = E.build_emoji(sources, tmp_path / "a", tmp_path / "cache", progress=False)
    E.build_emoji(sources, tmp_path / "b", tmp_path / "cache", progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")  # byte for byte

    corpus = load_corpus("emoji", tmp_path / "a")
    assert [d.doc_id for d in corpus] == [f[0] for f in FIXTURE]  # skin tone left out, hexcode kept
    banana = corpus.get("1F34C")
    assert banana.text == "A banana." and banana.category == "food-drink/food-fruit"
    assert (corpus.root / banana.image).is_file()
    assert corpus.get("1F346").text == "An eggplant."
    for folder in ("emoji", "emoji-train"):
        attribution = (tmp_path / "a" / folder / "ATTRIBUTION.md").read_text()
        assert "CC BY" in attribution and "openmoji@17.0.0" in attribution
    assert (tmp_path / "a/emoji/LICENSE-openmoji.txt").is_file()

    train = load_corpus("emoji-train", tmp_path / "a")
    assert len(train) == 2 * len(FIXTURE) == len(first.train_corpus)  # Noto and Twemoji of each concept
    assert {d.category for d in train} == {"noto", "twemoji"}
    keyword_queries = [q for q in load_queries(tmp_path / "a/emoji-train/queries_train.jsonl") if q.kind == "keywords"]
    assert "banana: fruit, potassium, yellow, monkey" in {q.text for q in keyword_queries}


def test_training_set_holds_only_train_concepts(sources, tmp_path):
    built = E.build_emoji(sources, tmp_path, tmp_path / "cache", progress=False)
    served_split = {E.concept_key(d.doc_id): E.concept_split(E.concept_key(d.doc_id)) for d in built.corpus}
    for doc in built.train_corpus:
        key = E.concept_key(doc.doc_id.split("/", 1)[1])
        assert E.concept_split(key) == "train"
        assert served_split.get(key, "train") == "train"


def test_concepts_fold_variants_and_split_the_same_across_sets():
    assert E.concept_key("1F468-200D-1F33E") == E.concept_key("1F469-200D-1F33E") == E.concept_key("1F9D1-200D-1F33E")
    assert E.concept_key("1F9D1-1F3FB-200D-1F33E") == E.concept_key("1f9d1-200d-1f33e")
    assert E.concept_key("2764-FE0F") == E.concept_key("2764")
    assert E.concept_key("1F34C") != E.concept_key("1F347")
    splits = [E.concept_split(f"key{i}") for i in range(2000)]
    shares = {s: splits.count(s) / len(splits) for s in E.SPLITS}
    assert abs(shares["train"] - 0.6) < 0.04 and abs(shares["test"] - 0.2) < 0.04


def test_relevance_matches_hand_checked_cases(monkeypatch):
    monkeypatch.setattr(E, "concept_split", lambda key: "test")
    records = [E.EmojiRecord(h, n, g, s, tuple([*t, *o, *k])) for h, _, n, g, s, t, o, k, _ in FIXTURE]
    by_text = {q.query.text: q for q in E.make_queries(records)}
    purple_fruit = [q for q in by_text.values() if q.query.kind == "attribute" and "purple" in q.query.text
                    and "fruit" in q.query.text]
    assert purple_fruit and all(q.relevant == ("1F347",) for q in purple_fruit)  # grapes, not the eggplant
    purple_food = [q for q in by_text.values() if "purple" in q.query.text and " food" in f" {q.query.text}"]
    assert purple_food and set(purple_food[0].relevant) == {"1F347", "1F346"}  # the group says food
    # "red" is in "red apple"'s caption, so no attribute query asks for a red fruit
    assert not [t for t in by_text if "red" in t.split() and "fruit" in t]
    names = {q.query.text: q.relevant for q in by_text.values() if q.query.kind == "name"}
    assert any("banana" in t and rel == ("1F34C",) for t, rel in names.items())
    assert len({q.query.qid for q in by_text.values()}) == len(by_text)


def test_queries_spanning_splits_are_dropped(monkeypatch):
    monkeypatch.setattr(E, "concept_split", lambda key: "test" if key == E.concept_key("1F347") else "train")
    records = [E.EmojiRecord(h, n, g, s, tuple([*t, *o, *k])) for h, _, n, g, s, t, o, k, _ in FIXTURE]
    for q in E.make_queries(records):
        assert len({E.concept_split(E.concept_key(d)) for d in q.relevant}) == 1
        if "purple" in q.query.text and " food" in f" {q.query.text}":
            pytest.fail(f"{q.query.text!r} spans train and test and should have been dropped")


def test_shipped_emoji_corpus_splits_are_disjoint_and_large_enough():
    from ciea.config import Settings

    assets = Settings().assets_dir
    served = load_corpus("emoji", assets)
    train = load_corpus("emoji-train", assets)
    test_ids = {d for q in json.loads((served.root / "qrels_test.json").read_text()).values() for d in q}
    test_concepts = {E.concept_key(d) for d in test_ids}
    trained_concepts = {E.concept_key(d.doc_id.split("/", 1)[1]) for d in train}
    assert not test_concepts & trained_concepts
    for folder, needles in ((served.root, ("OpenMoji", "CC BY-SA 4.0")),
                            (train.root, ("Noto Color Emoji", "Apache License 2.0", "Twemoji", "CC BY 4.0"))):
        attribution = (folder / "ATTRIBUTION.md").read_text(encoding="utf-8")
        assert all(n in attribution for n in needles)
    assert "Attribution-ShareAlike" in (served.root / "LICENSE-openmoji.txt").read_text(encoding="utf-8")
    queries = load_queries(served.root / "queries_test.jsonl")
    assert len(queries) >= 500 and {q.kind for q in queries} == {"attribute", "name"}
    for doc in served.documents[:50]:
        assert "-" not in doc.doc_id or doc.doc_id.upper() == doc.doc_id  # hexcode as OpenMoji spells it

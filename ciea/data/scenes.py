"""The scenes corpus: a complementary-information benchmark generated from the stamps.

Why: a caption says only part of what an image shows (docs/method.md). Here that is true
by construction. Each scene is a 256x256 canvas holding one large *primary* stamp and one or
two smaller *secondary* stamps; the document caption is the primary stamp's description
only. Queries that name the primary plus a secondary can be answered only by a retriever
that keeps what the image adds to the caption.

What is stored: layouts are data (``layouts.jsonl``: scene id, split, background, placed
objects with stamp id, box, role and, when recoloured, a ``PALETTE`` colour; probe scenes also
name their probe kind), never pixels. ``render_scene`` draws a layout from the
stamp thumbnails with deterministic pixels; ``ensure_rendered`` caches the images under
``<out_dir>/render/`` (or a folder the caller picks, linked there), which is a build output,
not something to commit. Everything is deterministic from ``seed``.

Objects: stamps whose description is a short noun phrase ("An elephant." -> "elephant";
at most 4 words, article A/An/Some, no digits, no second sentence). Names are grouped by head
noun (last word, singularised, plus a small alias table such as bunny -> rabbit and a
compound rule such as clownfish -> fish) and one name per group is kept, so no two objects
share a name or name one another ("lemon slice" is dropped while "lemon" exists). Primaries
and secondaries are disjoint pools: a primary never appears as a secondary, so a query that
names an object has no unmarked scene that also shows it.

Splits: every (primary, secondary) combination belongs to exactly one split, so no test or
dev combination appears in train; objects themselves repeat across splits.

Query kinds (per split; relevance is computed over the WHOLE corpus of all splits):
- ``caption``: names the primary only; relevant = every scene with that primary.
- ``complementary``: primary plus a secondary; relevant = every scene with that primary whose
  image contains that secondary. Test and dev use "<primary> beside <secondary>"; train uses
  four other templates, so no test phrasing is ever trained on.
- ``image-only``: a secondary alone ("a picture that also shows a <secondary>"); relevant =
  every scene whose image contains it, in any role.
Caption and image-only queries follow the same rule: one held-out template for dev/test,
four others for train (each training item gets every training template).
Probe kinds (``binding``, ``spatial``, ``count``, ``unseen``) come from probe scenes appended after
these base scenes, built with their hard negatives: ``ciea/data/scene_probes.py``. Base queries
take their items from base scenes only; their relevance counts every scene.

Sizes with the defaults on the shipped stamps corpus (949 stamps, seed 0): 288 usable
objects, 150 primaries x 14 scenes = 2,100 scenes (8 train / 2 dev / 4 test per primary:
1,200 / 300 / 600); 1,585 three-object and 515 two-object scenes; 3,685 secondary placements
spread evenly (26-27 each) over the 138 secondary-only objects.
Base queries (caption + complementary + image-only): test 150 + 1,050 + 138 = 1,338; dev
150 + 521 + 138 = 809; train 600 + 8,456 + 552 = 9,608 (four templates per item).
With ``probes`` (as shipped: ``build-assets --corpus scenes``; ``--no-probes`` leaves them out), 1,820
probe scenes more (632 train / 396 dev / 792 test), 3,920 scenes in all; probe queries
(binding + spatial + count + unseen): test 320 + 320 + 312 + 320; dev 160 + 160 + 156 + 160;
train 1,280 + 1,280 + 1,248 + 0. Building takes about 2 s and writes about 6.2 MB; rendering
all 3,920 images about 35 s of CPU on one core and 139 MB of PNGs. Training code must restrict
positives to train scenes: caption and image-only qrels span all splits.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import threading
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ciea.data.schema import (Corpus, CorpusError, Document, Query, read_jsonl,
                              split_query_files, write_jsonl)

SPLITS = ("train", "dev", "test")
DEFAULT_SCENES_PER_SPLIT = {"train": 8, "dev": 2, "test": 4}
CANVAS = 256
LAYOUTS_FILE = "layouts.jsonl"
META_FILE = "meta.json"
RENDER_DIR = "render"
MAX_NAME_WORDS = 4  # of the whole description, article included
KINDS = ("caption", "complementary", "image-only")  # base kinds; probe kinds: ciea/data/scene_probes.py

#: Colours a recoloured stamp can take (binding scenes), plain names anyone would agree on.
#: Checked by eye on rendered stamps; no orange (also a fruit name) and no pale tints.
PALETTE = {"red": (215, 25, 25), "green": (30, 160, 40), "blue": (30, 70, 220),
           "yellow": (245, 215, 0), "purple": (135, 40, 185)}

# Near-synonym heads folded into one group, so two objects never mean the same thing.
HEAD_ALIASES = {
    "bunny": "rabbit", "kitten": "cat", "puppy": "dog",
    "headstone": "gravestone", "tombstone": "gravestone", "stone": "gravestone",
    "marker": "gravestone", "fortress": "castle", "fort": "castle",
    "hen": "chicken", "chick": "chicken", "rooster": "chicken",
    "doe": "deer", "wapiti": "deer", "drake": "duck", "dromedary": "camel",
    "bull": "cow", "zebu": "cow", "ram": "sheep", "lamb": "sheep", "caribou": "reindeer",
    "seagull": "gull", "sailboat": "boat", "tugboat": "boat", "toadstool": "mushroom",
    "cep": "mushroom", "tavern": "inn", "tepee": "tent", "sombrero": "hat", "fedora": "hat",
    "cap": "hat", "orca": "whale", "mug": "cup", "jack-o-lantern": "pumpkin",
}
_FUNCTION_WORDS = frozenset({"in", "at", "with", "on", "and", "or", "playing", "for", "from", "to"})
_ARTICLE = re.compile(r"^(A|An|Some)\s+(.+?)[.!]*$")
_STRIP_CHARS = re.compile(r"[\"“”‘’',]")

# Query templates. {P}/{S}: object with its article; {pic}: a synonym for "picture",
# {a_pic}: the same with its article.
PICTURE_WORDS = ("picture", "image", "scene", "drawing")
HELD_OUT_TEMPLATES = {
    "caption": ("{a_pic} of {P}",),
    "complementary": ("{P} beside {S}",),
    "image-only": ("{a_pic} that also shows {S}",),
}
TRAIN_TEMPLATES = {
    "caption": ("show me {P}", "{pic} showing {P}", "find {P}", "{P} in {a_pic}"),
    "complementary": ("{P} with {S} nearby", "{P} next to {S}", "{a_pic} of {P} and {S}",
                      "{S} near {P}"),
    "image-only": ("something with {S} in it", "{S} somewhere in the {pic}",
                   "{a_pic} where {S} appears", "{S} also visible"),
}
KIND_CODES = {"caption": "cap", "complementary": "comp", "image-only": "img"}


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SceneObject:
    """One usable object: a stamp and the short noun phrase that names it."""

    name: str  # "elephant", "red umbrella"
    article: str  # "a", "an" or "some"
    key: str  # group key (singular head noun after aliases); unique per object
    doc_id: str  # stamp document id
    image: str  # thumbnail path relative to the stamps corpus folder
    description: str  # the stamp's description: the caption when this object is primary

    @property
    def phrase(self) -> str:
        """The name with its article, for query text ("an elephant")."""
        return f"{self.article} {self.name}"


@dataclass(frozen=True)
class PlacedObject:
    """A stamp drawn into a scene: its box on the canvas (pixels) and its role."""

    doc_id: str
    image: str  # relative to the stamps corpus folder
    name: str
    role: str  # "primary" or "secondary"
    x: int
    y: int
    w: int
    h: int
    color: str | None = None  # a PALETTE name when the stamp is recoloured (binding scenes)


@dataclass(frozen=True)
class Background:
    """A pale canvas: ``plain``, ``gradient`` (top colour to bottom colour) or ``mottled``."""

    kind: str
    color: tuple[int, int, int]
    color2: tuple[int, int, int] | None = None
    seed: int = 0


@dataclass(frozen=True)
class SceneLayout:
    """Everything needed to draw one scene; objects[0] is the primary."""

    scene_id: str
    split: str
    size: int
    background: Background
    objects: tuple[PlacedObject, ...]
    probe: str = ""  # the probe kind that generated the scene (ciea/data/scene_probes.py); "" for base scenes

    @property
    def primary(self) -> PlacedObject:
        return self.objects[0]

    @property
    def secondaries(self) -> tuple[PlacedObject, ...]:
        return self.objects[1:]

    def names(self) -> set[str]:
        """Names of every object the image shows."""
        return {o.name for o in self.objects}

    def to_json(self) -> dict:
        """The stored form; fields at their defaults (no colour, no probe) are left out, so base
        scenes keep the exact lines they had before probe scenes existed."""
        out = asdict(self)
        for obj in out["objects"]:
            if obj["color"] is None:
                del obj["color"]
        if not out["probe"]:
            del out["probe"]
        return out

    @classmethod
    def from_json(cls, obj: Mapping) -> "SceneLayout":
        bg = dict(obj["background"])
        background = Background(
            bg["kind"], tuple(bg["color"]), tuple(bg["color2"]) if bg.get("color2") else None,
            int(bg.get("seed", 0)),
        )
        objects = tuple(PlacedObject(**o) for o in obj["objects"])
        unknown = {o.color for o in objects if o.color is not None} - set(PALETTE)
        if unknown:
            raise CorpusError(f"Scene {obj['scene_id']}: unknown colour(s) {sorted(unknown)}; "
                              f"known: {', '.join(PALETTE)}.")
        return cls(str(obj["scene_id"]), str(obj["split"]), int(obj["size"]), background, objects,
                   str(obj.get("probe", "")))


#: A benchmark query carries its kind (a base kind, or a probe kind of ciea/data/scene_probes.py).
SceneQuery = Query


@dataclass
class ScenesBenchmark:
    """A built benchmark: layouts, the corpus, and per-split queries and qrels."""

    layouts: list[SceneLayout]
    corpus: Corpus
    queries: dict[str, list[SceneQuery]]
    qrels: dict[str, dict[str, dict[str, int]]]
    objects: list[SceneObject] = field(default_factory=list)
    primaries: list[str] = field(default_factory=list)
    unseen: dict[str, list[str]] = field(default_factory=dict)  # split -> objects held out of train secondaries

    def counts(self) -> dict:
        """Scenes per split (all, and probe scenes per kind) and queries per kind per split."""
        scenes = Counter(l.split for l in self.layouts)
        probes = Counter((l.probe, l.split) for l in self.layouts if l.probe)
        return {
            "scenes": {s: scenes[s] for s in SPLITS},
            "probe_scenes": {k: {s: probes[(k, s)] for s in SPLITS}
                             for k in dict.fromkeys(k for k, _ in sorted(probes))},
            "queries": {s: dict(Counter(q.kind for q in self.queries[s])) for s in SPLITS},
            "objects": len(self.objects),
            "primaries": len(self.primaries),
        }


# --------------------------------------------------------------------------- objects


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def _token_key(word: str) -> str:
    word = _singular(word.lower().strip("-"))
    return HEAD_ALIASES.get(word, word)


def object_name(description: str, max_words: int = MAX_NAME_WORDS) -> tuple[str, str] | None:
    """(name, article) when ``description`` is a short clean noun phrase, else None.

    "An elephant." -> ("elephant", "an"); "Some cherries." -> ("cherries", "some");
    "The letter r.", "Zero.", "A camera.  Say Cheese!" and anything over ``max_words``
    words -> None.
    """
    text = description.strip()
    if len(text.split()) > max_words:
        return None
    match = _ARTICLE.match(text)
    if not match:
        return None
    name = " ".join(_STRIP_CHARS.sub("", match.group(2)).split())
    words = name.lower().split()
    if not words or re.search(r"[\d.?!;:()]", name) or _FUNCTION_WORDS.intersection(words):
        return None
    return name, match.group(1).lower()


def select_objects(stamps: Sequence[Document], max_words: int = MAX_NAME_WORDS) -> list[SceneObject]:
    """The usable objects of a stamps corpus, one per head-noun group, sorted by name.

    Within a group the shortest name wins (then alphabetical); a name whose modifiers are
    another group's head ("lemon slice" next to "lemon") is passed over, and a group with no
    clean name is dropped. Among stamps with the same name the first doc id is used.
    """
    by_name: dict[str, list[Document]] = defaultdict(list)
    articles: dict[str, str] = {}
    display: dict[str, str] = {}
    for doc in stamps:
        if not doc.image:
            continue
        parsed = object_name(doc.text, max_words)
        if parsed is None:
            continue
        name, article = parsed
        low = name.lower()
        by_name[low].append(doc)
        articles.setdefault(low, article)
        display.setdefault(low, name)
    heads = {low: _token_key(low.split()[-1]) for low in by_name}
    keys = set(heads.values())
    # Compound rule: "clownfish" belongs with "fish", "mountaingoat" with "goat".
    compound = {}
    for k in keys:
        longer = [b for b in keys if b != k and len(b) >= 4 and k.endswith(b)]
        if longer:
            compound[k] = max(longer, key=len)
    groups: dict[str, list[str]] = defaultdict(list)
    for low, head in heads.items():
        groups[compound.get(head, head)].append(low)
    all_keys = set(groups) | set(compound)
    objects = []
    for key, names in groups.items():
        for low in sorted(names, key=lambda n: (len(n.split()), len(n), n)):
            modifiers = {_token_key(w) for w in low.split()[:-1]} - {"of"}
            if modifiers & all_keys:
                continue
            doc = sorted(by_name[low], key=lambda d: d.doc_id)[0]
            objects.append(SceneObject(display[low], articles[low], key, doc.doc_id, doc.image,
                                       doc.text.strip()))
            break
    return sorted(objects, key=lambda o: (o.name.lower(), o.doc_id))


# --------------------------------------------------------------------------- layouts


def _load_stamps(stamps_dir: Path) -> list[Document]:
    path = Path(stamps_dir) / "corpus.jsonl"
    if not path.is_file():
        raise CorpusError(f"No stamps corpus at {path}; build it with `python -m ciea build-assets --corpus stamps`.")
    return [Document(str(o["doc_id"]), str(o["text"]), o.get("image"), o.get("category", ""))
            for _, o in read_jsonl(path)]


@lru_cache(maxsize=1024)
def _stamp_rgba(path: str) -> Image.Image:
    """A stamp thumbnail as RGBA, cropped to its visible (alpha > 16) pixels."""
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    bbox = rgba.getchannel("A").point(lambda a: 255 if a > 16 else 0).getbbox()
    return rgba.crop(bbox) if bbox else rgba


def _fit_box(aspect: float, area: float, max_side: int) -> tuple[int, int]:
    w, h = math.sqrt(area * aspect), math.sqrt(area / aspect)
    scale = min(1.0, max_side / max(w, h))
    return max(8, round(w * scale)), max(8, round(h * scale))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    dx = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    dy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, dx) * max(0, dy)


def _place(rng: random.Random, size: int, boxes: list[tuple[int, int]], max_overlap: float,
           margin: int = 4) -> list[tuple[int, int, int, int]] | None:
    """Positions for boxes (first = primary) with little overlap, or None if it fails."""
    placed: list[tuple[int, int, int, int]] = []
    for w, h in boxes:
        for _ in range(300):
            x = rng.randint(margin, max(margin, size - margin - w))
            y = rng.randint(margin, max(margin, size - margin - h))
            box = (x, y, w, h)
            if all(_overlap(box, p) <= max_overlap * min(w * h, p[2] * p[3]) for p in placed):
                placed.append(box)
                break
        else:
            return None
    return placed


def _pale(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randint(228, 255), rng.randint(228, 255), rng.randint(228, 255))


def random_background(rng: random.Random) -> Background:
    """A pale background: plain (half the time), gradient or mottled."""
    kind = rng.choice(("plain", "plain", "gradient", "mottled"))
    return Background(kind, _pale(rng), _pale(rng) if kind == "gradient" else None,
                      rng.randrange(2**31) if kind == "mottled" else 0)


def make_layout(scene_id: str, split: str, primary: SceneObject, secondaries: Sequence[SceneObject],
                aspects: Mapping[str, float], rng: random.Random, size: int = CANVAS) -> SceneLayout:
    """Sizes, positions and background for one scene.

    The primary takes about a quarter to a third of the canvas; secondaries are at most
    about 40 % of its area and overlap any other object by at most 8 % of the smaller box,
    so every object stays recognisable.
    """
    background = random_background(rng)
    n_sec = len(secondaries)
    for attempt in range(50):
        shrink = 0.97 ** attempt
        side_p = rng.uniform(128, 156) if n_sec >= 2 else rng.uniform(136, 168)
        p_box = _fit_box(aspects[primary.doc_id], (side_p * shrink) ** 2, int(size * 0.9))
        p_area = p_box[0] * p_box[1]
        boxes = [p_box]
        for s in secondaries:
            side_s = rng.uniform(62, 84) * shrink
            area = min(side_s**2, 0.4 * p_area)
            boxes.append(_fit_box(aspects[s.doc_id], area, int(size * 0.5)))
        placed = _place(rng, size, boxes, max_overlap=0.08)
        if placed is not None:
            break
    else:  # pragma: no cover - 50 shrinking attempts always fit on a 256 canvas
        raise RuntimeError(f"could not lay out {scene_id}")
    objects = tuple(
        PlacedObject(o.doc_id, o.image, o.name, "primary" if i == 0 else "secondary", *box)
        for i, (o, box) in enumerate(zip([primary, *secondaries], placed))
    )
    return SceneLayout(scene_id, split, size, background, objects)


def _allocate(cands: list[SceneObject], need: Mapping[str, int], min_need: Mapping[str, int]) -> dict[str, list[SceneObject]]:
    """Split a primary's candidate secondaries into disjoint per-split pools.

    With enough candidates every slot gets its own object (each combination occurs once);
    otherwise pools shrink proportionally and objects repeat within (never across) a split.
    """
    total = sum(need.values())
    if len(cands) >= total:
        alloc = dict(need)
    else:
        alloc = {s: min_need[s] for s in need}
        spare = len(cands) - sum(alloc.values())
        if spare < 0:
            raise ValueError(
                f"Too few secondary objects ({len(cands)}) to keep (primary, secondary) combinations "
                "disjoint across splits; use fewer primaries or scenes per split."
            )
        deficit = {s: need[s] - alloc[s] for s in need}
        while spare > 0 and any(deficit.values()):
            s = max(deficit, key=lambda k: (deficit[k], -SPLITS.index(k)))
            alloc[s] += 1
            deficit[s] -= 1
            spare -= 1
    pools, start = {}, 0
    for s in SPLITS:
        if s in alloc:
            pools[s] = cands[start:start + alloc[s]]
            start += alloc[s]
    return pools


def generate_layouts(objects: Sequence[SceneObject], aspects: Mapping[str, float], seed: int = 0,
                     n_primaries: int = 150, scenes_per_split: Mapping[str, int] = DEFAULT_SCENES_PER_SPLIT,
                     three_object_fraction: float = 0.75, size: int = CANVAS) -> tuple[list[SceneLayout], list[str]]:
    """All scene layouts (shuffled, ids scene-00001...) and the primary object names.

    Primaries are a seeded sample of ``objects``; the rest are the secondary pool. Secondary
    use is balanced: each primary takes the least-used candidates first.
    """
    rng = random.Random(seed)
    objs = sorted(objects, key=lambda o: (o.name.lower(), o.doc_id))
    n_primaries = min(n_primaries, len(objs) - 2)
    if n_primaries < 1:
        raise ValueError(f"Need at least 3 usable objects, found {len(objs)}.")
    primaries = sorted(rng.sample(objs, n_primaries), key=lambda o: o.name.lower())
    primary_keys = {o.key for o in primaries}
    pool = [o for o in objs if o.key not in primary_keys]
    use: Counter[str] = Counter()
    specs: list[tuple[SceneObject, str, list[SceneObject]]] = []
    for primary in rng.sample(primaries, len(primaries)):
        counts = {s: n for s in SPLITS if (n := int(scenes_per_split.get(s, 0))) > 0}
        n_sec = {s: [2 if rng.random() < three_object_fraction else 1 for _ in range(n)]
                 for s, n in counts.items()}
        n_sec = {s: [min(k, len(pool)) for k in ks] for s, ks in n_sec.items()}
        ties = {o.key: rng.random() for o in pool}
        cands = sorted(pool, key=lambda o: (use[o.key], ties[o.key]))
        pools = _allocate(cands, {s: sum(ks) for s, ks in n_sec.items()},
                          {s: max(ks) for s, ks in n_sec.items()})
        for split, ks in n_sec.items():
            split_pool, local = pools[split], Counter()
            for k in ks:
                chosen: list[SceneObject] = []
                for o in sorted(split_pool, key=lambda o: (local[o.key], split_pool.index(o))):
                    if len(chosen) == k:
                        break
                    chosen.append(o)
                for o in chosen:
                    local[o.key] += 1
                    use[o.key] += 1
                specs.append((primary, split, rng.sample(chosen, len(chosen))))
    rng.shuffle(specs)  # ids carry no information about primary or split
    layouts = []
    for i, (primary, split, secondaries) in enumerate(specs, 1):
        scene_rng = random.Random(seed * 1_000_003 + i)
        layouts.append(make_layout(f"scene-{i:05d}", split, primary, secondaries, aspects, scene_rng, size))
    return layouts, [p.name for p in primaries]


# --------------------------------------------------------------------------- queries


def _fill(template: str, rng: random.Random, primary: SceneObject | None = None,
          secondary: SceneObject | None = None) -> str:
    pic = rng.choice(PICTURE_WORDS)
    a_pic = ("an " if pic[0] in "aeiou" else "a ") + pic
    return template.format(pic=pic, a_pic=a_pic, P=primary.phrase if primary else "",
                           S=secondary.phrase if secondary else "")


def make_queries(layouts: Sequence[SceneLayout], objects: Sequence[SceneObject], seed: int = 0
                 ) -> tuple[dict[str, list[SceneQuery]], dict[str, dict[str, dict[str, int]]]]:
    """Queries and exact qrels per split (relevance over all scenes of every split).

    Base kinds take their items from base scenes; probe scenes add the probe kinds' queries
    after them (``ciea/data/scene_probes.py``) and count for base relevance like any scene.
    """
    by_name = {o.name: o for o in objects}
    rng = random.Random(seed + 7919)
    with_primary: dict[str, set[str]] = defaultdict(set)
    with_object: dict[str, set[str]] = defaultdict(set)
    with_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
    for lay in layouts:
        with_primary[lay.primary.name].add(lay.scene_id)
        for o in lay.objects:
            with_object[o.name].add(lay.scene_id)
    for lay in layouts:  # a pair is relevant wherever both show, with that primary
        for o in lay.secondaries:
            with_pair[(lay.primary.name, o.name)].add(lay.scene_id)
    queries: dict[str, list[SceneQuery]] = {}
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        mine = [l for l in layouts if l.split == split and not l.probe]  # probe scenes ask their own kinds
        items = {
            "caption": sorted({(l.primary.name,) for l in mine}),
            "complementary": sorted({(l.primary.name, o.name) for l in mine for o in l.secondaries}),
            "image-only": sorted({(o.name,) for l in mine for o in l.secondaries}),
        }
        templates = TRAIN_TEMPLATES if split == "train" else HELD_OUT_TEMPLATES
        qs, rels = [], {}
        for kind in KINDS:
            n = 0
            for item in items[kind]:
                if kind == "caption":
                    relevant, p, s = with_primary[item[0]], by_name[item[0]], None
                elif kind == "complementary":
                    relevant, p, s = with_pair[item], by_name[item[0]], by_name[item[1]]
                else:
                    relevant, p, s = with_object[item[0]], None, by_name[item[0]]
                for template in templates[kind]:
                    n += 1
                    qid = f"{split}-{KIND_CODES[kind]}-{n:05d}"
                    qs.append(SceneQuery(qid, _fill(template, rng, p, s), kind))
                    rels[qid] = {d: 1 for d in sorted(relevant)}
        queries[split], qrels[split] = qs, rels
    if any(l.probe for l in layouts):
        from ciea.data.scene_probes import probe_queries

        probe_qs, probe_rels = probe_queries(layouts, objects, seed)
        for split in SPLITS:  # appended: base query ids, texts and order stay as they were
            queries[split] += probe_qs[split]
            qrels[split].update(probe_rels[split])
    return queries, qrels


# --------------------------------------------------------------------------- build / load


def image_aspects(stamps_dir: Path, objects: Iterable[SceneObject]) -> dict[str, float]:
    """Width/height of each object's visible pixels (what the layout boxes are fitted to)."""
    out = {}
    for o in objects:
        im = _stamp_rgba(str(Path(stamps_dir) / o.image))
        out[o.doc_id] = im.width / max(1, im.height)
    return out


def build_scenes(stamps_corpus_dir: Path, out_dir: Path, seed: int = 0, n_primaries: int = 150,
                 scenes_per_split: Mapping[str, int] = DEFAULT_SCENES_PER_SPLIT,
                 three_object_fraction: float = 0.75, size: int = CANVAS,
                 probe_groups: Mapping[str, Mapping[str, int]] | None = None,
                 unseen_objects: Mapping[str, int] | None = None, probes: bool = False) -> ScenesBenchmark:
    """Generate the benchmark from a stamps corpus folder and write it to ``out_dir``.

    Base scenes first, then, with ``probes`` or explicit ``probe_groups``, the probe scenes
    (``ciea/data/scene_probes.py``; ``probes`` takes its ``DEFAULT_GROUPS``, ``unseen_objects``
    defaults to its ``DEFAULT_UNSEEN_OBJECTS``); the shipped set has them (the command line asks
    for ``probes``). Writes ``layouts.jsonl``, ``corpus.jsonl`` (image =
    ``render/<scene_id>.png``, category = split), ``queries_<split>.jsonl`` ({"qid", "text",
    "kind"}), ``qrels_<split>.json`` ({qid: {doc_id: 1}}) and ``meta.json`` (parameters and
    counts). No images: call ``ensure_rendered`` for those.
    """
    from ciea.data import scene_probes

    stamps_corpus_dir, out_dir = Path(stamps_corpus_dir), Path(out_dir)
    objects = select_objects(_load_stamps(stamps_corpus_dir))
    aspects = image_aspects(stamps_corpus_dir, objects)
    layouts, primaries = generate_layouts(objects, aspects, seed, n_primaries, scenes_per_split,
                                          three_object_fraction, size)
    groups = probe_groups if probe_groups is not None else scene_probes.DEFAULT_GROUPS if probes else {}
    held_out = {}
    if any(n for per_split in groups.values() for n in per_split.values()):
        held_out = scene_probes.unseen_objects(
            objects, primaries, seed, scene_probes.DEFAULT_UNSEEN_OBJECTS if unseen_objects is None else unseen_objects)
        layouts += scene_probes.generate_probe_layouts(objects, aspects, layouts, primaries, seed, groups,
                                                       held_out, size)
    by_name = {o.name: o for o in objects}
    order = {s: i for i, s in enumerate(SPLITS)}
    docs = [Document(l.scene_id, by_name[l.primary.name].description, f"{RENDER_DIR}/{l.scene_id}.png", l.split)
            for l in sorted(layouts, key=lambda l: l.scene_id)]
    corpus = Corpus("scenes", out_dir, docs)
    queries, qrels = make_queries(layouts, objects, seed)
    bench = ScenesBenchmark(sorted(layouts, key=lambda l: l.scene_id), corpus, queries, qrels,
                            list(objects), primaries, held_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / LAYOUTS_FILE, (l.to_json() for l in bench.layouts))
    corpus.save()
    for split in sorted(queries, key=order.get):
        queries_path, qrels_path = split_query_files(out_dir, split)
        write_jsonl(queries_path, (asdict(q) for q in queries[split]))
        _write_qrels(qrels_path, qrels[split])
    meta = {"seed": seed, "n_primaries": n_primaries, "scenes_per_split": dict(scenes_per_split),
            "three_object_fraction": three_object_fraction, "size": size,
            "stamps_corpus": stamps_corpus_dir.name,
            "probe_groups": {k: dict(v) for k, v in groups.items()}, "unseen_objects": held_out,
            **bench.counts()}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return bench


def _write_qrels(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """JSON {qid: {doc_id: 1}}, one query per line (readable diffs, same JSON)."""
    lines = [f"{json.dumps(q)}: {json.dumps(dict(d))}" for q, d in qrels.items()]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")


def load_layouts(out_dir: Path) -> list[SceneLayout]:
    """Read ``out_dir/layouts.jsonl``."""
    path = Path(out_dir) / LAYOUTS_FILE
    if not path.is_file():
        raise CorpusError(f"No scene layouts at {path}; run build_scenes first.")
    return [SceneLayout.from_json(o) for _, o in read_jsonl(path)]


# --------------------------------------------------------------------------- rendering


def _background(bg: Background, size: int) -> Image.Image:
    if bg.kind == "gradient" and bg.color2 is not None:
        column = Image.new("RGB", (1, 2))
        column.putpixel((0, 0), tuple(bg.color))
        column.putpixel((0, 1), tuple(bg.color2))
        return column.resize((size, size), Image.Resampling.BILINEAR)
    if bg.kind == "mottled":
        rng = random.Random(bg.seed)
        cells = 8
        small = Image.new("RGB", (cells, cells))
        for y in range(cells):
            for x in range(cells):
                d = rng.randint(-10, 6)
                small.putpixel((x, y), tuple(max(0, min(255, c + d)) for c in bg.color))
        return small.resize((size, size), Image.Resampling.BICUBIC)
    return Image.new("RGB", (size, size), tuple(bg.color))


@lru_cache(maxsize=512)
def _tinted_rgba(path: str, color: str) -> Image.Image:
    """A stamp recoloured in one ``PALETTE`` colour, keeping its shading and alpha.

    Luminance, stretched over the visible pixels (2nd to 98th percentile), scales the colour
    from 30 % (outlines, shadows) to full strength, so a white mug and a black crow both come
    out plainly red, green, blue, yellow or purple.
    """
    rgba = np.asarray(_stamp_rgba(path), dtype=np.float32)
    lum = (0.299 * rgba[..., 0] + 0.587 * rgba[..., 1] + 0.114 * rgba[..., 2]) / 255.0
    visible = rgba[..., 3] > 16
    lo, hi = np.percentile(lum[visible], (2, 98)) if visible.any() else (0.0, 1.0)
    if hi - lo < 0.05:  # a flat drawing: one colour, drawn at full strength
        shade = np.ones_like(lum)
    else:
        shade = 0.3 + 0.7 * np.clip((lum - lo) / (hi - lo), 0.0, 1.0) ** 0.8
    rgb = np.asarray(PALETTE[color], dtype=np.float32)[None, None, :] * shade[..., None]
    out = np.dstack([rgb, rgba[..., 3]]).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGBA")


def render_scene(layout: SceneLayout, stamps_root: Path) -> Image.Image:
    """Draw a layout (RGB, ``layout.size`` square) from the stamp thumbnails.

    Deterministic: the same layout and thumbnails give the same pixels. The primary is drawn
    first so the smaller secondaries stay visible where boxes touch.
    """
    canvas = _background(layout.background, layout.size).convert("RGBA")
    for obj in layout.objects:
        path = str(Path(stamps_root) / obj.image)
        stamp = _tinted_rgba(path, obj.color) if obj.color else _stamp_rgba(path)
        stamp = stamp.resize((obj.w, obj.h), Image.Resampling.LANCZOS)
        canvas.alpha_composite(stamp, (obj.x, obj.y))
    return canvas.convert("RGB")


def ensure_rendered(out_dir: Path, stamps_dir: Path, progress: bool = True,
                    render_dir: Path | None = None) -> int:
    """Render every scene whose cached image is missing; return how many were drawn.

    Images go where ``corpus.jsonl`` points (``out_dir/render/``). With ``render_dir`` they
    are written there instead and ``out_dir/render`` becomes a link to it, so the cache can
    live outside the repository.
    """
    out_dir = Path(out_dir)
    default = out_dir / RENDER_DIR
    if render_dir is not None and Path(render_dir).resolve() != default.resolve():
        render_dir = Path(render_dir)
        render_dir.mkdir(parents=True, exist_ok=True)
        if default.is_symlink() and default.resolve() != render_dir.resolve():
            default.unlink()
        if not default.exists():
            default.symlink_to(render_dir.resolve(), target_is_directory=True)
        elif default.resolve() != render_dir.resolve():
            raise FileExistsError(f"{default} exists and is not a link to {render_dir}; remove it or "
                                  "render without render_dir.")
    target = default.resolve() if default.exists() else default
    target.mkdir(parents=True, exist_ok=True)
    missing = [l for l in load_layouts(out_dir) if not (target / f"{l.scene_id}.png").is_file()]
    for lay in tqdm(missing, desc="render scenes", unit="img", disable=not progress):
        path = target / f"{lay.scene_id}.png"
        tmp = path.with_suffix(".tmp.png")
        render_scene(lay, stamps_dir).save(tmp, "PNG", optimize=False, compress_level=6)
        tmp.replace(path)  # atomic: an interrupted run never leaves a half-written image
    return len(missing)


@lru_cache(maxsize=4)
def _layouts_by_id(out_dir: Path) -> dict[str, SceneLayout]:
    return {lay.scene_id: lay for lay in load_layouts(out_dir)}


def render_one(out_dir: Path, stamps_dir: Path, scene_id: str) -> Path:
    """Render and cache a single scene image (for on-demand display); return its path."""
    out_dir = Path(out_dir)
    path = out_dir / RENDER_DIR / f"{scene_id}.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # One temporary name per process and thread: the app's workers may render the same
        # scene at once, and each must replace the target with its own complete file.
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp.png")
        render_scene(_layouts_by_id(out_dir.resolve())[scene_id], stamps_dir).save(tmp, "PNG")
        tmp.replace(path)
    return path

"""Scene query kinds that only per-patch image tokens can answer: binding, spatial, count, unseen.

Why: the base scenes kinds (``ciea/data/scenes.py``) ask whether an object is in the picture,
which a pooled image vector answers perfectly (a bag of object names scores 0.999 complementary
MRR@10), and every test secondary is also a training secondary. These kinds ask what a pooled
vector loses: which object carries a colour, where one object is relative to another, how many
copies there are, and objects never seen in the secondary role. Each query's hard negatives are
in the corpus, differing from the relevant scene only in the property asked about.

Probe scenes are appended to the base scenes (new ids after them; the base scenes, queries and
ids are untouched). Their caption is the primary's description, as for every scene, so only the
image can answer. Each kind is built in groups (``DEFAULT_GROUPS`` per split):

- ``binding``: two scenes with the same primary P and the same boxes for secondaries S and T,
  recoloured (``scenes.PALETTE``) c1/c2 in one and c2/c1 in the other. Queries: "P beside a red
  S" and so on (four per group; the templates of ``complementary``). Relevant: scenes with
  primary P and a secondary S recoloured that colour. The other scene holds a red T and a blue S.
- ``spatial``: a scene with primary P, a secondary S beside it (left or right, overlapping it
  vertically) and a secondary T above or below it (overlapping it horizontally), and the same
  scene mirrored in both axes. Queries: "S to the left of P", "T above P" ... (four per group).
  Relevant: scenes with primary P and a secondary S whose box lies wholly on that side of P's
  box (``holds``). The mirrored scene is the negative.
- ``count``: three scenes with primary P and one, two or three copies of S. Queries: "P with
  two S" ... (three per group). Relevant: scenes with primary P and exactly that many S.
- ``unseen``: a scene with primary P and two secondaries from a held-out set of objects
  (dev and test hold out different ones) that is never a secondary in any train scene, base or
  probe. Queries: "P beside U" (dev and test only). Relevant: scenes with primary P showing U.

Objects keep their base roles: probe primaries are base primaries (the only captioned objects),
the secondaries of binding, spatial and count come from the base secondary pool (seen as
secondaries in training), the unseen objects from the base primaries (never a secondary in a
base scene). So the objects of base ``image-only`` queries are still never named by a caption.
No two objects shown together in a probe scene are ever shown together in another group or in
any base scene, so a query naming them has no unmarked scene that also shows both. As a
consequence the base ``image-only`` queries gain the probe scenes that show their object and
``caption`` queries the probe scenes of their primary (relevance stays exact: both are judged
over every scene); ``complementary`` judgements are unchanged, though each primary now has
more scenes that match the caption and not the query.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Mapping, Sequence

from ciea.data.scenes import (CANVAS, PALETTE, PICTURE_WORDS, SPLITS, HELD_OUT_TEMPLATES, TRAIN_TEMPLATES,
                              PlacedObject, SceneLayout, SceneObject, SceneQuery, _fit_box, _overlap,
                              make_layout, random_background)

PROBE_KINDS = ("binding", "spatial", "count", "unseen")
PROBE_CODES = {"binding": "bind", "spatial": "spat", "count": "count", "unseen": "unseen"}
#: Groups per kind and split: test >= 300 queries per kind, dev half of test, train as test
#: (unseen has no train split by definition). See the module docstring for group sizes.
DEFAULT_GROUPS = {
    "binding": {"train": 80, "dev": 40, "test": 80},  # 2 scenes, 4 queries per group
    "spatial": {"train": 80, "dev": 40, "test": 80},  # 2 scenes, 4 queries
    "count": {"train": 104, "dev": 52, "test": 104},  # 3 scenes, 3 queries
    "unseen": {"train": 0, "dev": 80, "test": 160},  # 1 scene, 2 queries
}
#: How many base primaries are held out of the secondary role for the unseen kind, per split.
DEFAULT_UNSEEN_OBJECTS = {"dev": 15, "test": 30}

RELATIONS = ("left", "right", "above", "below")
MIRROR = {"left": "right", "right": "left", "above": "below", "below": "above"}
NUMBERS = {1: "one", 2: "two", 3: "three"}
#: A name holding one of these (as a word or a word's start: "blackbird") already states a
#: colour, so it never takes part in a binding scene.
COLOUR_WORDS = ("red", "green", "blue", "yellow", "purple", "orange", "pink", "brown", "black", "white",
                "grey", "gray", "silver", "gold", "colorful", "colourful", "violet")
IRREGULAR_PLURALS = {"woodlouse": "woodlice", "mouse": "mice", "potato": "potatoes", "tomato": "tomatoes", "dingo": "dingoes",
                     "knife": "knives", "leaf": "leaves", "wolf": "wolves", "man": "men", "woman": "women",
                     "child": "children", "tooth": "teeth", "foot": "feet", "goose": "geese",
                     "trout": "trout", "fowl": "fowl", "fish": "fish", "sheep": "sheep", "deer": "deer"}

# Templates. {P}: the primary with its article; {S}: the secondary phrase (coloured for binding);
# {N} {Sn}: number word and the secondary's name in that number. One held-out template per kind
# (per relation for spatial) for dev/test, four others for train, as for the base kinds. No
# template may read both ways round ("S on the left and P on the right" is also "P on the
# left ..."): relevance needs to know which object is the primary.
HELD_OUT = {
    "binding": HELD_OUT_TEMPLATES["complementary"],
    "unseen": HELD_OUT_TEMPLATES["complementary"],
    "count": ("{P} with {N} {Sn}",),
    "left": ("{S} to the left of {P}",),
    "right": ("{S} to the right of {P}",),
    "above": ("{S} above {P}",),
    "below": ("{S} below {P}",),
}
TRAINING = {
    "binding": TRAIN_TEMPLATES["complementary"],
    "unseen": (),
    "count": ("{N} {Sn} and {P}", "{P} next to {N} {Sn}", "{a_pic} of {P} and {N} {Sn}", "{N} {Sn} near {P}"),
    "left": ("{P} with {S} on its left", "{S} left of {P}", "{P} and, on its left, {S}",
             "{a_pic} with {S} at the left of {P}"),
    "right": ("{P} with {S} on its right", "{S} right of {P}", "{P} and, on its right, {S}",
              "{a_pic} with {S} at the right of {P}"),
    "above": ("{P} with {S} over it", "{S} higher up than {P}", "{P} and, higher up, {S}",
              "{a_pic} with {S} over {P}"),
    "below": ("{P} with {S} under it", "{S} lower down than {P}", "{P} and, lower down, {S}",
              "{a_pic} with {S} under {P}"),
}


# --------------------------------------------------------------------------- relevance


def holds(relation: str, obj: PlacedObject, ref: PlacedObject) -> bool:
    """Whether ``obj``'s box lies wholly on the ``relation`` side of ``ref``'s box (pixels,
    y down): left = its right edge at or before ref's left edge, and so on."""
    if relation == "left":
        return obj.x + obj.w <= ref.x
    if relation == "right":
        return obj.x >= ref.x + ref.w
    if relation == "above":
        return obj.y + obj.h <= ref.y
    if relation == "below":
        return obj.y >= ref.y + ref.h
    raise ValueError(f"unknown relation {relation!r}; known: {', '.join(RELATIONS)}")


def matches(kind: str, layout: SceneLayout, item: tuple) -> bool:
    """Whether ``layout`` is relevant to a probe query about ``item``; the one place that decides.

    Items: binding (P, S, colour), spatial (P, S, relation), count (P, S, n), unseen (P, S).
    Every kind needs P as the primary; the rest is read from the stored layout.
    """
    if layout.primary.name != item[0]:
        return False
    named = [o for o in layout.secondaries if o.name == item[1]]
    if kind == "binding":
        return any(o.color == item[2] for o in named)
    if kind == "spatial":
        return any(holds(item[2], o, layout.primary) for o in named)
    if kind == "count":
        return len(named) == item[2]
    if kind == "unseen":
        return bool(named)
    raise ValueError(f"unknown probe kind {kind!r}; known: {', '.join(PROBE_KINDS)}")


def items_of(layout: SceneLayout) -> list[tuple]:
    """The query items a probe scene asks about (its own kind only), in object order."""
    p, kind = layout.primary.name, layout.probe
    if kind == "binding":
        return [(p, o.name, o.color) for o in layout.secondaries if o.color]
    if kind == "spatial":
        out = []
        for o in layout.secondaries:
            rels = [r for r in RELATIONS if holds(r, o, layout.primary)]
            if len(rels) != 1:
                raise ValueError(f"{layout.scene_id}: {o.name} stands in {rels or 'no'} relation to the primary")
            out.append((p, o.name, rels[0]))
        return out
    if kind == "count":
        return [(p, name, n) for name, n in Counter(o.name for o in layout.secondaries).items()]
    if kind == "unseen":
        return [(p, o.name) for o in layout.secondaries]
    return []


# --------------------------------------------------------------------------- naming


def has_colour_word(name: str) -> bool:
    return any(w.startswith(c) for w in name.lower().replace("-", " ").split() for c in COLOUR_WORDS)


def countable(obj: SceneObject) -> bool:
    """Objects named in the singular with a/an ("some cherries" is not)."""
    return obj.article in ("a", "an")


def plural(name: str) -> str:
    """English plural of an object name: the head noun (before "of", else the last word) inflected."""
    words = name.split()
    i = words.index("of") - 1 if "of" in words[1:] else len(words) - 1
    w, low = words[i], words[i].lower()
    if low in IRREGULAR_PLURALS:
        inflected = w[:1] + IRREGULAR_PLURALS[low][1:]
    elif low.endswith(("s", "x", "z", "ch", "sh")):
        inflected = w + "es"
    elif low.endswith("y") and len(low) > 1 and low[-2] not in "aeiou":
        inflected = w[:-1] + "ies"
    else:
        inflected = w + "s"
    return " ".join(words[:i] + [inflected] + words[i + 1:])


def coloured_phrase(obj: SceneObject, colour: str) -> str:
    """"a red umbrella", "an inn"-style article chosen for the colour word ("some" kept)."""
    article = "some" if obj.article == "some" else ("an" if colour[0] in "aeiou" else "a")
    return f"{article} {colour} {obj.name}"


def _text(template: str, rng: random.Random, **slots: str) -> str:
    pic = rng.choice(PICTURE_WORDS)
    return template.format(pic=pic, a_pic=("an " if pic[0] in "aeiou" else "a ") + pic, **slots)


def _item_texts(kind: str, item: tuple, by_name: Mapping[str, SceneObject], held_out: bool,
                rng: random.Random) -> list[str]:
    p, s = by_name[item[0]], by_name[item[1]]
    if kind == "spatial":
        templates = (HELD_OUT if held_out else TRAINING)[item[2]]
    else:
        templates = (HELD_OUT if held_out else TRAINING)[kind]
    if kind == "binding":
        slots = {"P": p.phrase, "S": coloured_phrase(s, item[2])}
    elif kind == "count":
        slots = {"P": p.phrase, "N": NUMBERS[item[2]], "Sn": s.name if item[2] == 1 else plural(s.name)}
    else:
        slots = {"P": p.phrase, "S": s.phrase}
    return [_text(t, rng, **slots) for t in templates]


def probe_queries(layouts: Sequence[SceneLayout], objects: Sequence[SceneObject], seed: int = 0
                  ) -> tuple[dict[str, list[SceneQuery]], dict[str, dict[str, dict[str, int]]]]:
    """Probe-kind queries and exact qrels per split; relevance over every scene of every split.

    Items come from the probe scenes of each split; train uses the four training templates
    (one query each), dev and test the held-out one.
    """
    by_name = {o.name: o for o in objects}
    rng = random.Random(seed + 104_729)
    by_primary: dict[str, list[SceneLayout]] = defaultdict(list)
    for lay in layouts:
        by_primary[lay.primary.name].append(lay)
    queries: dict[str, list[SceneQuery]] = {}
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        qs, rels = [], {}
        for kind in PROBE_KINDS:
            items = sorted({it for lay in layouts if lay.split == split and lay.probe == kind
                            for it in items_of(lay)}, key=lambda it: tuple(map(str, it)))
            n = 0
            for item in items:
                relevant = sorted(l.scene_id for l in by_primary[item[0]] if matches(kind, l, item))
                for text in _item_texts(kind, item, by_name, split != "train", rng):
                    n += 1
                    qid = f"{split}-{PROBE_CODES[kind]}-{n:05d}"
                    qs.append(SceneQuery(qid, text, kind))
                    rels[qid] = {d: 1 for d in relevant}
        queries[split], qrels[split] = qs, rels
    return queries, qrels


# --------------------------------------------------------------------------- layouts


def spatial_layout(split: str, primary: SceneObject, beside: SceneObject, over: SceneObject,
                   aspects: Mapping[str, float], rng: random.Random, size: int = CANVAS,
                   gap: int = 6, margin: int = 4) -> SceneLayout:
    """A scene with ``beside`` left or right of the primary and ``over`` above or below it.

    ``beside`` overlaps the primary's rows by at least half its height (so it is neither above
    nor below), ``over`` its columns by at least half its width, with ``gap`` pixels between
    boxes: each secondary stands in exactly one relation to the primary.
    """
    background = random_background(rng)
    for attempt in range(200):
        shrink = 0.98 ** attempt
        pw, ph = _fit_box(aspects[primary.doc_id], (rng.uniform(104, 128) * shrink) ** 2, int(size * 0.55))
        cap = 0.4 * pw * ph  # as in make_layout: a secondary never outweighs the primary
        bw, bh = _fit_box(aspects[beside.doc_id], min((rng.uniform(56, 72) * shrink) ** 2, cap), int(size * 0.3))
        ow, oh = _fit_box(aspects[over.doc_id], min((rng.uniform(56, 72) * shrink) ** 2, cap), int(size * 0.3))
        # Canonical frame: beside on the left, over above; flipped afterwards.
        x_lo, x_hi = margin + bw + gap, size - margin - pw
        y_lo, y_hi = margin + oh + gap, size - margin - ph
        if x_lo > x_hi or y_lo > y_hi:
            continue
        px, py = rng.randint(x_lo, x_hi), rng.randint(y_lo, y_hi)
        by_lo, by_hi = max(margin, py - bh // 2), min(size - margin - bh, py + ph - (bh + 1) // 2)
        ox_lo, ox_hi = max(margin, px - ow // 2), min(size - margin - ow, px + pw - (ow + 1) // 2)
        if by_lo > by_hi or ox_lo > ox_hi:
            continue
        b = (rng.randint(margin, px - gap - bw), rng.randint(by_lo, by_hi), bw, bh)
        o = (rng.randint(ox_lo, ox_hi), rng.randint(margin, py - gap - oh), ow, oh)
        if _overlap(b, o) == 0:
            break
    else:  # pragma: no cover - 200 shrinking attempts always fit on a 256 canvas
        raise RuntimeError(f"could not lay out a spatial scene for {primary.name}")
    boxes = [(px, py, pw, ph), b, o]
    flip_x, flip_y = rng.random() < 0.5, rng.random() < 0.5
    objects = tuple(_mirrored(PlacedObject(obj.doc_id, obj.image, obj.name, role, *box), size, flip_x, flip_y)
                    for obj, role, box in zip((primary, beside, over), ("primary", "secondary", "secondary"), boxes))
    return SceneLayout("", split, size, background, objects, "spatial")


def _mirrored(obj: PlacedObject, size: int, flip_x: bool, flip_y: bool) -> PlacedObject:
    return replace(obj, x=size - obj.x - obj.w if flip_x else obj.x, y=size - obj.y - obj.h if flip_y else obj.y)


def mirror_layout(layout: SceneLayout) -> SceneLayout:
    """The same scene mirrored in both axes (boxes only; stamps are drawn upright): every
    left/right and above/below relation between two boxes is reversed."""
    return replace(layout, objects=tuple(_mirrored(o, layout.size, True, True) for o in layout.objects))


def _recoloured(layout: SceneLayout, colours: Sequence[str]) -> SceneLayout:
    objects = (layout.primary, *(replace(o, color=c) for o, c in zip(layout.secondaries, colours)))
    return replace(layout, objects=objects, probe="binding")


class _Picker:
    """Chooses each group's objects: least-used first (seeded ties), and never two objects
    that are already shown together anywhere (base scenes or an earlier group)."""

    def __init__(self, base: Sequence[SceneLayout], rng: random.Random) -> None:
        self.together = {frozenset((a.name, b.name)) for lay in base for a in lay.objects for b in lay.objects
                         if a.name != b.name}
        self.primary_use: Counter[str] = Counter()
        self.secondary_use: Counter[str] = Counter()
        self.rng = rng

    def pick(self, primaries: Sequence[SceneObject], secondaries: Sequence[SceneObject], k: int,
             n_scenes: int) -> tuple[SceneObject, list[SceneObject]] | None:
        ties = {o.name: self.rng.random() for o in [*primaries, *secondaries]}
        for p in sorted(primaries, key=lambda o: (self.primary_use[o.name], ties[o.name])):
            chosen: list[SceneObject] = []
            for s in sorted(secondaries, key=lambda o: (self.secondary_use[o.name], ties[o.name])):
                if len(chosen) == k:
                    break
                if s.name == p.name or any(frozenset((s.name, o.name)) in self.together for o in [p, *chosen]):
                    continue
                chosen.append(s)
            if len(chosen) == k:
                group = [p, *chosen]
                self.together |= {frozenset((a.name, b.name)) for a in group for b in group if a is not b}
                self.primary_use[p.name] += n_scenes
                for s in chosen:
                    self.secondary_use[s.name] += n_scenes
                return p, chosen
        return None


def unseen_objects(objects: Sequence[SceneObject], primaries: Sequence[str], seed: int,
                   sizes: Mapping[str, int] = DEFAULT_UNSEEN_OBJECTS) -> dict[str, list[str]]:
    """Per split (dev, test), the base primaries held out of the secondary role everywhere but
    in that split's unseen scenes; dev and test hold out disjoint sets."""
    rng = random.Random(seed + 15_485_863)
    names = sorted(primaries)
    need = sum(sizes.values())
    if need > len(names):
        raise ValueError(f"{need} unseen objects asked for, only {len(names)} primaries to draw them from.")
    drawn = rng.sample(names, need)
    out, start = {}, 0
    for split in SPLITS:
        if sizes.get(split):
            out[split] = sorted(drawn[start:start + sizes[split]])
            start += sizes[split]
    if "train" in out:
        raise ValueError("unseen objects cannot be drawn for the train split: they are the ones it never shows.")
    return out


def generate_probe_layouts(objects: Sequence[SceneObject], aspects: Mapping[str, float],
                           base: Sequence[SceneLayout], primaries: Sequence[str], seed: int = 0,
                           groups: Mapping[str, Mapping[str, int]] = DEFAULT_GROUPS,
                           unseen: Mapping[str, Sequence[str]] | None = None,
                           size: int = CANVAS) -> list[SceneLayout]:
    """The probe scenes (ids ``scene-<n>`` numbered on from the base scenes, shuffled so an id
    says nothing about kind, split or group)."""
    rng = random.Random(seed + 32_452_843)
    by_name = {o.name: o for o in objects}
    primary_names = set(primaries)
    ordered = sorted(objects, key=lambda o: (o.name.lower(), o.doc_id))
    # Roles as in the base scenes: captioned primaries come from the base primaries, secondaries
    # from the secondary-only pool, so an object that base queries ask about as image-only is
    # never named by a caption (it would make those queries caption-answerable).
    captioned = [o for o in ordered if o.name in primary_names]
    pool = [o for o in ordered if o.name not in primary_names]
    unseen = unseen if unseen is not None else unseen_objects(objects, primaries, seed)
    plain = [o for o in pool if not has_colour_word(o.name)]
    plain_captioned = [o for o in captioned if not has_colour_word(o.name)]
    held_out = {n for names in unseen.values() for n in names}
    unseen_primaries = [o for o in captioned if o.name not in held_out]  # never beside another held-out object
    eligible = {"binding": (plain_captioned, plain, 2, 2), "spatial": (captioned, pool, 2, 2),
                "count": (captioned, [o for o in pool if countable(o)], 1, 3)}
    picker = _Picker(base, rng)
    # Most constrained kinds first (unseen draws from a few held-out objects, binding from
    # colourless names), splits interleaved within a kind; ids are shuffled at the end.
    plan = []
    for kind in ("unseen", "binding", "spatial", "count"):
        runs = [(kind, split) for split in SPLITS for _ in range(int(groups.get(kind, {}).get(split, 0)))]
        rng.shuffle(runs)
        plan += runs
    made: list[SceneLayout] = []
    for g, (kind, split) in enumerate(plan):
        if kind == "unseen":
            if split not in unseen:
                raise ValueError(f"unseen scenes asked for in {split!r}, which holds out no objects.")
            prims, secs, k, n_scenes = unseen_primaries, [by_name[n] for n in unseen[split]], 2, 1
        else:
            prims, secs, k, n_scenes = eligible[kind]
        picked = picker.pick(prims, secs, k, n_scenes)
        if picked is None:
            raise ValueError(f"Too few objects for {kind} scene {g + 1} ({split}) without showing two objects "
                             "together twice; ask for fewer probe groups.")
        p, chosen = picked
        scene_rng = random.Random(seed * 1_000_003 + 700_001 + g)
        if kind == "binding":
            lay = make_layout("", split, p, chosen, aspects, scene_rng, size)
            c1, c2 = scene_rng.sample(sorted(PALETTE), 2)
            made += [_recoloured(lay, (c1, c2)), _recoloured(lay, (c2, c1))]
        elif kind == "spatial":
            lay = spatial_layout(split, p, chosen[0], chosen[1], aspects, scene_rng, size)
            made += [lay, mirror_layout(lay)]
        elif kind == "count":
            made += [replace(make_layout("", split, p, chosen * n, aspects, scene_rng, size), probe="count")
                     for n in (1, 2, 3)]
        else:
            made.append(replace(make_layout("", split, p, chosen, aspects, scene_rng, size), probe="unseen"))
    rng.shuffle(made)
    first = len(base) + 1
    return [replace(lay, scene_id=f"scene-{first + i:05d}") for i, lay in enumerate(made)]

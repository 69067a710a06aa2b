"""The emoji corpora: real drawings with natural-language queries and exact relevance.

Two folders come out of one build (``python -m ciea build-assets --corpus emoji``):

- ``assets/emoji`` (served): OpenMoji 17.0.0 (CC BY-SA 4.0), one document per record of
  ``data/openmoji.json`` without a skin tone, OpenMoji's own extras included. Document id =
  the record's ``hexcode``; caption = the CLDR name only, as a sentence ("A banana."), so
  colour, shape and parts are in the picture only; category = group/subgroup.
- ``assets/emoji-train`` (training only, never served): Noto Color Emoji (Apache-2.0) and
  Twemoji (graphics CC BY 4.0) drawings of the *train* concepts, each with the same caption
  form and a keyword text ("banana: fruit, potassium, plantain, yellow") as training query.

Concepts: an emoji's concept is its code points without variation selectors, skin tones,
ZWJ and gender signs, with man / woman / person folded into person, so "woman farmer" and
"man farmer" are one concept. Concepts are split train/dev/test 60/20/20 by a hash of that
key, identically for every emoji set: no test concept is drawn in any training pair.

Queries on ``emoji`` (every split ranks the whole corpus; relevance from keyword sets):
- ``attribute``: a visual word the caption lacks plus a category word, e.g. "a purple fruit";
  relevant = every emoji whose keyword set (CLDR name and keywords, OpenMoji tags, emojilib
  keywords) holds both words and whose caption lacks the visual word. Three phrasings per set.
- ``name``: the CLDR name, phrased as a request ("an emoji of a banana"); relevant = every
  emoji with that name. Caption-answerable.
A query belongs to the split of its relevant documents' concepts and is dropped when they
span splits, so dev and test queries are about concepts no training pair showed.

Sources are npm packages, installed into a cache folder by ``install_sources`` at build time;
the app and training read only the committed output.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from PIL import Image
from tqdm import tqdm

from ciea.data.schema import Corpus, Document, Query, split_query_files, write_jsonl

log = logging.getLogger(__name__)

#: npm packages (exact versions) the build reads; verified to install from the npm registry.
NPM_PACKAGES = {
    "openmoji": "17.0.0",
    "@iconify-json/noto": "1.2.9",
    "@twemoji/svg": "15.0.0",
    "emojibase-data": "17.0.0",
    "emojilib": "4.0.3",
}
CORPUS_NAME, TRAIN_CORPUS_NAME = "emoji", "emoji-train"
SPLITS = ("train", "dev", "test")
SPLIT_PERCENT = {"train": 60, "dev": 20, "test": 20}
THUMBNAIL_SIDE = 144
THUMBNAIL_QUALITY = 80
KINDS = ("attribute", "name")

SKIN_TONES = frozenset({"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"})
#: Code points that only join or vary an emoji (ZWJ, variation selector, gender signs, the
#: "facing right" arrow): dropped from the concept key.
CONCEPT_NOISE = frozenset({"fe0f", "fe0e", "200d", "2640", "2642", "27a1"})
PERSON_FOLD = {"1f468": "1f9d1", "1f469": "1f9d1"}  # man, woman -> person

#: Words for what a picture shows and a CLDR name often omits: colours, shapes, materials and
#: visible parts or things. A query pairs one with a category word ("a purple fruit").
VISUAL_WORDS = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray",
    "gold", "silver", "square", "circle", "round", "triangle", "heart", "star", "cross", "arrow",
    "water", "fire", "ice", "snow", "rain", "cloud", "sun", "moon", "sky", "grass", "leaves", "wood",
    "metal", "glass", "gem", "paper", "ball", "hat", "helmet", "glasses", "crown", "hair", "beard",
    "eyes", "teeth", "mouth", "tongue", "tear", "hands", "wheel", "wings", "horns", "tail", "smoke",
    "steam", "light", "box", "bag", "flag", "sea", "mountain", "tree", "flower", "egg", "milk",
)
#: Category words; an emoji's categories are its keywords plus its OpenMoji group and subgroup
#: words ("animal-mammal" -> animal, mammal), singular.
CATEGORY_WORDS = (
    "animal", "bird", "fish", "bug", "insect", "mammal", "reptile", "marine", "fruit", "vegetable",
    "food", "drink", "dessert", "sweet", "plant", "flower", "vehicle", "car", "boat", "transport",
    "clothing", "tool", "building", "place", "sport", "game", "instrument", "music", "face", "hand",
    "person", "weather", "sign", "symbol", "toy", "office", "household", "technology", "computer",
    "light", "book", "money", "time", "science", "medical", "healthcare", "emergency", "event",
    "celebration", "nature", "religion", "family", "fantasy", "geometric",
)
#: Visual words that are adjectives; the others are nouns and take "with" ("a computer with glasses").
ADJECTIVES = frozenset({"red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
                        "gray", "gold", "silver", "square", "round", "metal", "glass", "paper", "wood"})
ADJECTIVE_TEMPLATES = ("{a} {v} {c}", "{c} that is {v}", "an emoji of {a} {v} {c}", "something {v}, {a} {c}")
NOUN_TEMPLATES = ("{a} {c} with {v}", "{c} showing {v}", "an emoji of {a} {c} with {v}", "{v} on {a} {c}")
NAME_TEMPLATES = ("{n}", "an emoji of {an} {n}", "a picture of {an} {n}")
MAX_RELEVANT = 20  # attribute sets matching more documents than this are too vague to judge

ATTRIBUTION = """# {title}: attribution and licences

{body}

Built by `python -m ciea build-assets --corpus emoji` from the npm packages
{packages}.
Keywords: CLDR annotations via `emojibase-data` (MIT; Unicode data under the Unicode licence)
and `emojilib` (MIT). Thumbnails: longest side {side} px, WebP.
"""
OPENMOJI_BODY = """All emoji designed by OpenMoji, the open-source emoji and icon project
(https://openmoji.org), licence CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).
This folder holds {count} OpenMoji drawings without skin tones as thumbnails (changed: resized
and converted to WebP), with captions from their CLDR names."""
TRAIN_BODY = """Training-only drawings ({count}) of the train-split concepts, never served:
- Noto Color Emoji by Google (https://github.com/googlefonts/noto-emoji), Apache License 2.0,
  via `@iconify-json/noto`.
- Twemoji by Twitter, Inc and other contributors (https://github.com/jdecked/twemoji), graphics
  licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/), via `@twemoji/svg`.
Changed: rendered from SVG, resized and converted to WebP."""


# -- identities and splits ------------------------------------------------------------------
def normalise_hex(hexcode: str) -> str:
    """Lower-case code points joined by '-', variation selectors removed (file names vary on them)."""
    return "-".join(p for p in re.split(r"[-_ ]+", hexcode.strip().lower()) if p and p not in ("fe0f", "fe0e"))


def concept_key(hexcode: str) -> str:
    """The concept an emoji draws (see the module docstring): equal across sets and variants."""
    parts = [PERSON_FOLD.get(p, p) for p in normalise_hex(hexcode).split("-")]
    kept = [p for p in parts if p not in CONCEPT_NOISE and p not in SKIN_TONES]
    return "-".join(kept or parts)


def concept_split(key: str) -> str:
    """train / dev / test for a concept, from a hash of its key (stable across runs and sets)."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    edge = 0
    for split in SPLITS:
        edge += SPLIT_PERCENT[split]
        if bucket < edge:
            return split
    return SPLITS[-1]


def words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w}


def caption_of(name: str) -> str:
    """The CLDR name as a sentence: "banana" -> "A banana.", "flag: Germany" -> "Flag: Germany."."""
    name = " ".join(name.split())
    if not name:
        return ""
    if ":" in name or not name[0].isalpha() or name[0].isupper():
        return name[0].upper() + name[1:] + ("" if name.endswith(".") else ".")
    return f"{_article(name).capitalize()} {name}."


def _article(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"


@dataclass(frozen=True)
class EmojiRecord:
    """One emoji of one set, with everything the builders need."""

    hexcode: str  # as the source spells it (OpenMoji's ``hexcode`` for the served corpus)
    name: str  # CLDR name
    group: str
    subgroup: str
    keywords: tuple[str, ...]  # CLDR keywords, OpenMoji tags, emojilib keywords (phrases, in order)

    @property
    def concept(self) -> str:
        return concept_key(self.hexcode)

    @property
    def split(self) -> str:
        return concept_split(self.concept)

    @property
    def caption(self) -> str:
        return caption_of(self.name)

    @property
    def keyword_words(self) -> set[str]:
        return words(self.name) | {w for k in self.keywords for w in words(k)}

    @property
    def category_words(self) -> set[str]:
        groups = words(f"{self.group} {self.subgroup}")
        return self.keyword_words | groups | {g[:-1] for g in groups if g.endswith("s") and len(g) > 3}

    def keyword_text(self) -> str:
        """Natural training text: "banana: fruit, potassium, plantain"."""
        seen, kept = {self.name.lower()}, []
        for k in self.keywords:
            k = k.strip().lower()
            if k and k not in seen:
                seen.add(k)
                kept.append(k)
        return f"{self.name}: {', '.join(kept)}" if kept else self.name


def _split_tags(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


# -- sources --------------------------------------------------------------------------------
def install_sources(cache_dir: Path) -> Path:
    """``npm install`` the pinned packages into ``cache_dir`` (a build step); returns node_modules."""
    cache_dir = Path(cache_dir)
    modules = cache_dir / "node_modules"
    if all((modules / name / "package.json").is_file() and
           json.loads((modules / name / "package.json").read_text(encoding="utf-8")).get("version") == version
           for name, version in NPM_PACKAGES.items()):
        return modules
    if shutil.which("npm") is None:
        raise FileNotFoundError("npm is needed to fetch the emoji sources (apt-get install npm), "
                                "or pass --source NODE_MODULES_DIR holding " + ", ".join(NPM_PACKAGES))
    cache_dir.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}@{version}" for name, version in NPM_PACKAGES.items()]
    subprocess.run(["npm", "install", "--prefix", str(cache_dir), "--no-save", "--no-audit", "--no-fund", *specs],
                   check=True)
    return modules


@dataclass
class EmojiSources:
    """The parsed npm packages: OpenMoji records, CLDR data, emojilib keywords, drawings."""

    root: Path  # node_modules

    def _json(self, *parts: str):
        return json.loads((self.root.joinpath(*parts)).read_text(encoding="utf-8"))

    def emojilib(self) -> dict[str, list[str]]:
        return self._json("emojilib", "dist", "emoji-en-US.json")

    def openmoji(self) -> list[EmojiRecord]:
        """OpenMoji records without a skin tone, in the file's order."""
        lib = self.emojilib()
        out = []
        for r in self._json("openmoji", "data", "openmoji.json"):
            if r.get("skintone"):
                continue
            keywords = _dedupe([*_split_tags(r.get("tags", "")), *_split_tags(r.get("openmoji_tags", "")),
                                *lib.get(r.get("emoji", ""), [])])
            out.append(EmojiRecord(r["hexcode"], r.get("annotation", "") or r["hexcode"], r.get("group", ""),
                                   r.get("subgroups", ""), keywords))
        return out

    def cldr(self) -> list[tuple[EmojiRecord, str]]:
        """Unicode emoji (no skin tones) from emojibase, with OpenMoji's tags (colours, mostly) and
        emojilib keywords, and their characters."""
        lib = self.emojilib()
        openmoji_tags = {normalise_hex(r["hexcode"]): _split_tags(r.get("openmoji_tags", ""))
                         for r in self._json("openmoji", "data", "openmoji.json")}
        out = []
        for r in self._json("emojibase-data", "en", "data.json"):
            if "label" not in r:
                continue
            keywords = _dedupe([*r.get("tags", []), *openmoji_tags.get(normalise_hex(r["hexcode"]), []),
                                *lib.get(r.get("emoji", ""), [])])
            out.append((EmojiRecord(r["hexcode"], r["label"], str(r.get("group", "")), str(r.get("subgroup", "")),
                                    keywords), r.get("emoji", "")))
        return out

    def openmoji_svg(self, hexcode: str) -> bytes | None:
        path = self.root / "openmoji" / "color" / "svg" / f"{hexcode.upper()}.svg"
        return path.read_bytes() if path.is_file() else None

    def noto_svgs(self) -> dict[str, bytes]:
        """Noto drawings by normalised hex code, as standalone SVG documents."""
        data = self._json("@iconify-json", "noto", "icons.json")
        chars = self._json("@iconify-json", "noto", "chars.json")
        icons, width, height = data["icons"], data.get("width", 128), data.get("height", 128)
        out = {}
        for hexcode, name in chars.items():
            icon = icons.get(name)
            if icon is None:
                continue
            w, h = icon.get("width", width), icon.get("height", height)
            svg = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                   f'width="{w}" height="{h}" viewBox="{icon.get("left", 0)} {icon.get("top", 0)} {w} {h}">'
                   f'{icon["body"]}</svg>')
            out.setdefault(normalise_hex(hexcode), svg.encode())
        return out

    def twemoji_svgs(self) -> dict[str, Path]:
        folder = self.root / "@twemoji" / "svg"
        return {normalise_hex(p.stem): p for p in sorted(folder.glob("*.svg"))}

    def versions(self) -> dict[str, str]:
        return {name: self._json(*name.split("/"), "package.json")["version"] for name in NPM_PACKAGES}


def render_svg(svg: bytes, side: int = THUMBNAIL_SIDE) -> Image.Image:
    """An SVG drawing as RGBA with its longest side ``side``."""
    import cairosvg

    png = cairosvg.svg2png(bytestring=svg, output_width=side * 2, output_height=side * 2)
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def _try_render(svg: bytes, side: int, what: str) -> Image.Image | None:
    """``render_svg``, or None with a warning when the renderer cannot draw that file."""
    try:
        return render_svg(svg, side)
    except Exception as exc:  # one broken drawing must not stop the whole build
        log.warning("could not render %s: %s", what, exc)
        return None


def _save_thumbnail(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # method 4, not 6: the same size within 5% and 100x faster here (1.4 s per 144 px image at 6).
    # exact=True keeps the colour under transparent pixels as rendered.
    image.save(path, "WEBP", quality=THUMBNAIL_QUALITY, method=4, exact=True)


# -- queries --------------------------------------------------------------------------------
@dataclass(frozen=True)
class JudgedQuery:
    query: Query
    relevant: tuple[str, ...]  # doc ids
    split: str


def _pick(options: Sequence[str], key: str, count: int) -> list[str]:
    """``count`` distinct options chosen by a hash of ``key`` (deterministic, spread evenly)."""
    start = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(options)
    return [options[(start + i) % len(options)] for i in range(min(count, len(options)))]


def make_queries(records: Sequence[EmojiRecord], doc_ids: Sequence[str] | None = None,
                 attribute_phrasings: int = 3) -> list[JudgedQuery]:
    """Attribute and name queries with exact relevance over ``records`` (see module docstring).

    ``doc_ids`` defaults to the records' hex codes. Queries whose relevant documents span
    splits are dropped; qids are stable: kind, split and a hash of the text.
    """
    doc_ids = list(doc_ids or [r.hexcode for r in records])
    kw = [r.keyword_words for r in records]
    categories = [r.category_words for r in records]
    caption_words = [words(r.name) for r in records]
    out: list[JudgedQuery] = []

    def add(kind: str, text: str, rows: Sequence[int]) -> None:
        splits = {records[i].split for i in rows}
        if len(splits) != 1:
            return
        split = splits.pop()
        qid = f"{kind[:4]}-{split}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
        out.append(JudgedQuery(Query(qid, text, kind), tuple(doc_ids[i] for i in rows), split))

    for visual in VISUAL_WORDS:
        for category in CATEGORY_WORDS:
            rows = [i for i in range(len(records)) if visual in kw[i] and category in categories[i]]
            if (visual == category or not rows or len(rows) > MAX_RELEVANT
                    or any(visual in caption_words[i] for i in rows)):
                continue
            templates = ADJECTIVE_TEMPLATES if visual in ADJECTIVES else NOUN_TEMPLATES
            for template in _pick(templates, f"{visual}|{category}", attribute_phrasings):
                article = _article(visual if "{a} {v}" in template else category)
                add("attribute", template.format(v=visual, c=category, a=article), rows)

    by_name: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_name[" ".join(r.name.lower().split())].append(i)
    for name, rows in by_name.items():
        template = _pick(NAME_TEMPLATES, name, 1)[0]
        add("name", template.format(n=name, an=_article(name)), rows)
    seen: set[str] = set()
    unique = []
    for q in out:  # two keyword sets can give the same text; the first one is kept
        if q.query.text not in seen:
            seen.add(q.query.text)
            unique.append(q)
    return unique


def write_query_sets(out_dir: Path, queries: Sequence[JudgedQuery], splits: Sequence[str] = SPLITS
                     ) -> dict[str, dict[str, int]]:
    """queries_<split>.jsonl and qrels_<split>.json per split; returns counts per split and kind."""
    counts: dict[str, dict[str, int]] = {}
    for split in splits:
        chosen = sorted((q for q in queries if q.split == split), key=lambda q: (q.query.kind, q.query.qid))
        queries_path, qrels_path = split_query_files(out_dir, split)
        write_jsonl(queries_path, ({"qid": q.query.qid, "text": q.query.text, "kind": q.query.kind} for q in chosen))
        qrels = {q.query.qid: {d: 1 for d in sorted(q.relevant)} for q in chosen}
        qrels_path.write_text(json.dumps(qrels, indent=0, sort_keys=True) + "\n", encoding="utf-8")
        counts[split] = {kind: sum(q.query.kind == kind for q in chosen) for kind in KINDS}
    return counts


# -- builders -------------------------------------------------------------------------------
@dataclass
class EmojiBuild:
    corpus: Corpus
    train_corpus: Corpus
    query_counts: dict[str, dict[str, int]]


def build_emoji_corpus(sources: EmojiSources, out_dir: Path, side: int = THUMBNAIL_SIDE,
                       progress: bool = True) -> tuple[Corpus, dict[str, dict[str, int]]]:
    """assets/emoji: OpenMoji thumbnails, corpus.jsonl, natural-query sets, licence files."""
    out_dir = Path(out_dir)
    if (out_dir / "thumbs").exists():
        shutil.rmtree(out_dir / "thumbs")
    records, docs, skipped = [], [], []
    for record in tqdm(sources.openmoji(), desc="openmoji", unit="img", disable=not progress):
        svg = sources.openmoji_svg(record.hexcode)
        image = None if svg is None else _try_render(svg, side, f"OpenMoji {record.hexcode}")
        if image is None:
            skipped.append(record.hexcode)
            continue
        rel = f"thumbs/{record.hexcode}.webp"
        _save_thumbnail(image, out_dir / rel)
        records.append(record)
        docs.append(Document(record.hexcode, record.caption, rel, f"{record.group}/{record.subgroup}"))
    corpus = Corpus(CORPUS_NAME, out_dir, docs)
    corpus.save()
    counts = write_query_sets(out_dir, make_queries(records))
    licence = sources.root / "openmoji" / "LICENSE.txt"
    if licence.is_file():
        shutil.copyfile(licence, out_dir / "LICENSE-openmoji.txt")
    _write_attribution(out_dir, "Emoji corpus (OpenMoji)", OPENMOJI_BODY.format(count=len(docs)), sources, side)
    _write_meta(out_dir, sources, {"documents": len(docs), "queries": counts, "skipped_unrenderable": skipped,
                                   "concepts": _concept_counts(records)})
    return corpus, counts


def build_emoji_training_corpus(sources: EmojiSources, out_dir: Path, side: int = THUMBNAIL_SIDE,
                                progress: bool = True) -> Corpus:
    """assets/emoji-train: Noto and Twemoji drawings of train concepts with keyword-text queries.

    Each drawing is a document (caption = CLDR name sentence, like the served corpus); its
    training queries are its keyword text and the attribute queries over the training drawings.
    """
    out_dir = Path(out_dir)
    if (out_dir / "thumbs").exists():
        shutil.rmtree(out_dir / "thumbs")
    noto, twemoji = sources.noto_svgs(), sources.twemoji_svgs()
    records, docs, texts = [], [], []
    cldr = [(r, ch) for r, ch in sources.cldr() if r.split == "train"]
    for record, _ in tqdm(cldr, desc="noto+twemoji (train concepts)", unit="emoji", disable=not progress):
        key = normalise_hex(record.hexcode)
        drawings = (("noto", noto.get(key)),
                    ("twemoji", twemoji[key].read_bytes() if key in twemoji else None))
        for style, svg in drawings:
            image = None if svg is None else _try_render(svg, side, f"{style} {record.hexcode}")
            if image is None:
                continue
            doc_id = f"{style}/{record.hexcode}"
            rel = f"thumbs/{style}/{record.hexcode}.webp"
            _save_thumbnail(image, out_dir / rel)
            records.append(record)
            docs.append(Document(doc_id, record.caption, rel, style))
            texts.append(record.keyword_text())
    corpus = Corpus(TRAIN_CORPUS_NAME, out_dir, docs)
    corpus.save()
    doc_ids = [d.doc_id for d in docs]
    queries = make_queries(records, doc_ids)
    by_text: dict[str, list[str]] = defaultdict(list)
    for doc_id, text in zip(doc_ids, texts):
        by_text[text].append(doc_id)
    for text, relevant in by_text.items():
        qid = f"kw-train-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
        queries.append(JudgedQuery(Query(qid, text, "keywords"), tuple(relevant), "train"))
    counts = write_query_sets(out_dir, [q for q in queries if q.split == "train"], splits=("train",))
    counts["train"]["keywords"] = len(by_text)
    _write_attribution(out_dir, "Emoji training pairs (Noto Color Emoji, Twemoji)", TRAIN_BODY.format(count=len(docs)),
                       sources, side)
    _write_meta(out_dir, sources, {"documents": len(docs), "queries": counts,
                                   "styles": {s: sum(d.category == s for d in docs) for s in ("noto", "twemoji")}})
    return corpus


def build_emoji(source: Path | None, assets_dir: Path, cache_dir: Path, progress: bool = True) -> EmojiBuild:
    """Both emoji folders from the npm packages (installed into ``cache_dir`` unless ``source``)."""
    sources = EmojiSources(Path(source) if source else install_sources(Path(cache_dir) / "npm-emoji"))
    corpus, counts = build_emoji_corpus(sources, Path(assets_dir) / CORPUS_NAME, progress=progress)
    train = build_emoji_training_corpus(sources, Path(assets_dir) / TRAIN_CORPUS_NAME, progress=progress)
    return EmojiBuild(corpus, train, counts)


def _concept_counts(records: Sequence[EmojiRecord]) -> dict[str, int]:
    concepts: dict[str, str] = {r.concept: r.split for r in records}
    return {split: sum(s == split for s in concepts.values()) for split in SPLITS}


def _write_attribution(out_dir: Path, title: str, body: str, sources: EmojiSources, side: int) -> None:
    packages = ", ".join(f"`{n}@{v}`" for n, v in sources.versions().items())
    (out_dir / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(title=title, body=body, packages=packages, side=side),
                                            encoding="utf-8")


def _write_meta(out_dir: Path, sources: EmojiSources, facts: Mapping[str, object]) -> None:
    meta = {"sources": sources.versions(), "split_percent": SPLIT_PERCENT, **facts}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")

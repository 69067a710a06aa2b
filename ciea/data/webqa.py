"""WebQA in the UniVL-DR / MARVEL file layout: streaming readers and a corpus converter.

The dataset is large (hundreds of thousands of text snippets, and as many base64 JPEGs in
one multi-GB ``imgs.tsv``), so everything here streams: documents and queries are read line by line, and
``ImageStore`` decodes one image at a time by seeking to the byte offset that
``imgs.lineidx.new`` gives for its id. Files inside the data folder::

    train.json / dev.json / test.json   {qid, Q, A, img_posFacts, img_negFacts, txt_posFacts, txt_negFacts}
    all_docs.json                        {snippet_id, fact, title}      (text documents)
    all_imgs.json                        {image_id, title, caption}     (image documents)
    imgs.tsv                             image_id <TAB> base64 JPEG
    imgs.lineidx.new                     image_id <TAB> byte offset of that line in imgs.tsv
    test_qrels.txt (dev_qrels.txt)       qid <TAB> doc_id <TAB> 1

``write_corpus`` turns it into the project's corpus layout (``corpus.jsonl`` + JPEG
thumbnails) so ``python -m ciea build --corpus webqa`` indexes it like any other corpus.
Command line: ``python -m ciea build-assets --corpus webqa --source DATA_DIR [--limit N]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from PIL import Image
from tqdm import tqdm

from ciea.data.schema import Corpus, CorpusError, Document, Query, read_jsonl, split_query_files, write_jsonl
from ciea.images import ImageInputError, load_image

log = logging.getLogger(__name__)

DOCS_FILE = "all_docs.json"
IMAGES_META_FILE = "all_imgs.json"
IMAGES_TSV = "imgs.tsv"
IMAGES_INDEX = "imgs.lineidx.new"
#: ``Document.image`` of an image document read straight from the dataset: ``imgs.tsv#<id>``.
IMAGE_REF_PREFIX = IMAGES_TSV + "#"
#: Longest side of the thumbnails ``write_corpus`` writes.
THUMBNAIL_SIDE = 384
THUMBNAIL_QUALITY = 85
TEXT, IMAGE = "text", "image"  # Document.category of the two kinds

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")


class WebQAError(CorpusError):
    """A WebQA file is missing or malformed; the message names the file and what to do."""


class UnknownImageError(WebQAError):
    """The image id is not in ``imgs.lineidx.new``."""


class DamagedImageError(WebQAError):
    """The ``imgs.tsv`` line of an image is not valid base64, not a decodable image, or not
    the line the index promised."""


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class WebQAPaths:
    """Where each WebQA file lives inside ``root``; ``require`` fails with a helpful message."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def docs(self) -> Path:
        return self.root / DOCS_FILE

    @property
    def images_meta(self) -> Path:
        return self.root / IMAGES_META_FILE

    @property
    def images_tsv(self) -> Path:
        return self.root / IMAGES_TSV

    @property
    def images_index(self) -> Path:
        return self.root / IMAGES_INDEX

    def split(self, split: str) -> Path:
        """Query file of a split: ``train.json``, ``dev.json``, ``test.json``."""
        return self.root / f"{split}.json"

    def qrels(self, split: str) -> Path:
        """Relevance file of a split (``test_qrels.txt``; the dataset ships only test's)."""
        return self.root / f"{split}_qrels.txt"

    def splits(self) -> list[str]:
        """Splits whose query file exists, in train/dev/test order."""
        return [s for s in ("train", "dev", "test") if self.split(s).is_file()]

    def check_root(self) -> None:
        """Fail with a ``WebQAError`` unless ``root`` is a folder."""
        if not self.root.is_dir():
            raise WebQAError(f"WebQA folder {self.root} not found (expected the UniVL-DR/MARVEL "
                             f"data/WebQA folder holding {DOCS_FILE}, {IMAGES_META_FILE}, {IMAGES_TSV}, ...).")

    def require(self, path: Path) -> Path:
        """``path`` if it is a file, else a ``WebQAError`` naming it and the expected layout."""
        self.check_root()
        if not path.is_file():
            raise WebQAError(f"WebQA file {path.name} is missing from {self.root}. {_HINTS.get(path.name, '')}"
                             .rstrip())
        return path


_HINTS = {
    IMAGES_TSV: "It comes from the UniVL-DR image archive (imgs.7z.001...; extract with `7z x imgs.7z.001`).",
    IMAGES_INDEX: "It maps each image id to its byte offset in imgs.tsv and ships with the UniVL-DR data.",
    DOCS_FILE: "It ships in the UniVL-DR data.zip.",
    IMAGES_META_FILE: "It ships in the UniVL-DR data.zip.",
}


def _paths(root: Path | WebQAPaths) -> WebQAPaths:
    return root if isinstance(root, WebQAPaths) else WebQAPaths(Path(root))


def _field(obj: dict, key: str, path: Path, lineno: int):
    try:
        return obj[key]
    except KeyError:
        raise WebQAError(f"{path}:{lineno}: missing field {key!r}.") from None


def _clean(text) -> str:
    return " ".join(str(text or "").replace("\r", " ").split())


def join_title(title: str, body: str) -> str:
    """``"title: body"`` so a document keeps its topic; just ``body`` when the title is empty or
    already starts the body, just ``title`` when the body is empty."""
    title, body = _clean(title), _clean(body)
    n = len(title)
    if not title or (body.lower().startswith(title.lower()) and not body[n:n + 1].isalnum()):
        return body or title
    return f"{title}: {body}" if body else title


# --------------------------------------------------------------------------- documents


def image_ref(image_id: str | int) -> str:
    """The ``Document.image`` reference of an image still inside ``imgs.tsv``."""
    return f"{IMAGE_REF_PREFIX}{image_id}"


def parse_image_ref(ref: str) -> str:
    """Image id of an ``imgs.tsv#<id>`` reference (a bare id is returned unchanged)."""
    return ref[len(IMAGE_REF_PREFIX):] if ref.startswith(IMAGE_REF_PREFIX) else ref


def _text_documents(path: Path) -> Iterator[Document]:
    for lineno, obj in read_jsonl(path):
        doc_id = str(_field(obj, "snippet_id", path, lineno))
        text = join_title(obj.get("title", ""), _field(obj, "fact", path, lineno))
        yield Document(doc_id, text, None, TEXT)


def _image_documents(path: Path) -> Iterator[Document]:
    for lineno, obj in read_jsonl(path):
        doc_id = str(_field(obj, "image_id", path, lineno))
        text = join_title(obj.get("title", ""), obj.get("caption", ""))
        yield Document(doc_id, text, image_ref(doc_id), IMAGE)


def iter_documents(root: Path | WebQAPaths, kinds: Sequence[str] = (TEXT, IMAGE)) -> Iterator[Document]:
    """Stream the corpus: text snippets (``all_docs.json``) then images (``all_imgs.json``).

    Text documents: id = snippet_id, text = "title: fact", no image. Image documents:
    id = str(image_id), text = "title: caption", image = ``imgs.tsv#<id>`` (resolve it with
    ``ImageStore``). Both files are checked before the first document is yielded.
    """
    paths = _paths(root)
    unknown = set(kinds) - {TEXT, IMAGE}
    if unknown:
        raise ValueError(f"Unknown document kinds {sorted(unknown)}; use {TEXT!r} and/or {IMAGE!r}.")
    files = [(paths.require(paths.docs), _text_documents)] if TEXT in kinds else []
    if IMAGE in kinds:
        files.append((paths.require(paths.images_meta), _image_documents))
    return (doc for path, reader in files for doc in reader(path))


# --------------------------------------------------------------------------- queries and qrels


@dataclass(frozen=True)
class WebQAExample:
    """One line of a split file: the question, its answer and its positive/negative facts."""

    qid: str
    question: str
    answer: str
    img_pos: tuple[str, ...] = ()
    img_neg: tuple[str, ...] = ()
    txt_pos: tuple[str, ...] = ()
    txt_neg: tuple[str, ...] = ()

    @property
    def positives(self) -> tuple[str, ...]:
        """Relevant document ids, images first (the qrels of this query)."""
        return self.img_pos + self.txt_pos


def _ids(obj: dict, key: str, path: Path, lineno: int) -> tuple[str, ...]:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise WebQAError(f"{path}:{lineno}: {key!r} should be a list of ids.")
    # The raw WebQA release stores facts as objects; UniVL-DR flattens them to ids. Accept both.
    out = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("image_id", item.get("snippet_id"))
        out.append(str(item))
    return tuple(out)


def iter_examples(root: Path | WebQAPaths, split: str) -> Iterator[WebQAExample]:
    """Stream the full records of ``<split>.json`` (train, dev or test)."""
    paths = _paths(root)
    path = paths.split(split)
    if not path.is_file():
        paths.check_root()
        have = ", ".join(paths.splits()) or "none"
        raise WebQAError(f"WebQA split {split!r} not found: {path.name} is missing from {paths.root} "
                         f"(available splits: {have}).")

    def rows() -> Iterator[WebQAExample]:
        for lineno, obj in read_jsonl(path):
            yield WebQAExample(
                qid=str(_field(obj, "qid", path, lineno)),
                question=_clean(_field(obj, "Q", path, lineno)).strip('"'),
                answer=_clean(obj.get("A", "")),
                img_pos=_ids(obj, "img_posFacts", path, lineno),
                img_neg=_ids(obj, "img_negFacts", path, lineno),
                txt_pos=_ids(obj, "txt_posFacts", path, lineno),
                txt_neg=_ids(obj, "txt_negFacts", path, lineno),
            )

    return rows()


def iter_queries(root: Path | WebQAPaths, split: str) -> Iterator[Query]:
    """Stream the questions of a split as ``Query(qid, text=Q)`` records."""
    return (Query(ex.qid, ex.question) for ex in iter_examples(root, split))


def read_qrels_file(path: Path) -> dict[str, dict[str, int]]:
    """``{qid: {doc_id: rel}}`` from ``qid <TAB> doc_id <TAB> rel`` lines."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise WebQAError(f"{path}:{lineno}: expected 'qid<TAB>doc_id<TAB>rel', got {line.strip()!r}.")
            qid, doc_id, rel = parts
            try:
                qrels.setdefault(qid, {})[doc_id] = int(rel)
            except ValueError:
                raise WebQAError(f"{path}:{lineno}: relevance {rel!r} is not an integer.") from None
    return qrels


def load_qrels(root: Path | WebQAPaths, split: str) -> dict[str, dict[str, int]]:
    """Relevance judgements ``{qid: {doc_id: 1}}`` of a split.

    From ``<split>_qrels.txt`` where the dataset ships one (test), otherwise from the
    ``img_posFacts`` + ``txt_posFacts`` of ``<split>.json`` (train, dev); the two agree by
    construction. Queries without positives are left out.
    """
    paths = _paths(root)
    if paths.qrels(split).is_file():
        return read_qrels_file(paths.qrels(split))
    return {ex.qid: {d: 1 for d in ex.positives} for ex in iter_examples(paths, split) if ex.positives}


# --------------------------------------------------------------------------- images


class ImageStore:
    """Random access to the images of ``imgs.tsv`` without loading them all.

    Reads the id -> byte offset index once; each request seeks to one line, checks that it
    holds the requested id, base64-decodes it and opens it with ``ciea.images.load_image``.
    Safe to share between threads (reads are serialised, decoding is not) and across
    ``fork`` (the file is reopened in a new process).
    """

    def __init__(self, tsv: Path, index: Path) -> None:
        self.tsv, self.index = Path(tsv), Path(index)
        self._offsets = self._read_index(self.index)
        self._size = self.tsv.stat().st_size
        self._fh: io.BufferedReader | None = None
        self._pid = -1
        self._lock = threading.Lock()

    @classmethod
    def from_root(cls, root: Path | WebQAPaths) -> "ImageStore":
        """The store of a WebQA folder (needs ``imgs.tsv`` and ``imgs.lineidx.new``)."""
        paths = _paths(root)
        return cls(paths.require(paths.images_tsv), paths.require(paths.images_index))

    @staticmethod
    def _read_index(path: Path) -> dict[str, int]:
        offsets: dict[str, int] = {}
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or not parts[1].isdigit():
                    raise WebQAError(f"{path}:{lineno}: expected 'image_id<TAB>byte_offset', "
                                     f"got {line.strip()[:80]!r}.")
                offsets[parts[0]] = int(parts[1])
        return offsets

    def __len__(self) -> int:
        return len(self._offsets)

    def __contains__(self, image_id: object) -> bool:
        return parse_image_ref(str(image_id)) in self._offsets

    def ids(self) -> Iterator[str]:
        """Image ids in index order."""
        return iter(self._offsets)

    def offset(self, image_id: str | int) -> int:
        """Byte offset of the image's line in ``imgs.tsv``."""
        key = parse_image_ref(str(image_id))
        try:
            return self._offsets[key]
        except KeyError:
            raise UnknownImageError(
                f"Image id {key!r} is not in {self.index.name} ({len(self)} images indexed)."
            ) from None

    def _line(self, offset: int) -> bytes:
        with self._lock:
            if self._fh is None or self._pid != os.getpid():
                self._fh = open(self.tsv, "rb")
                self._pid = os.getpid()
            self._fh.seek(offset)
            return self._fh.readline()

    def read_bytes(self, image_id: str | int) -> bytes:
        """The encoded (JPEG) bytes of one image, straight from its ``imgs.tsv`` line."""
        key = parse_image_ref(str(image_id))
        offset = self.offset(key)
        where = f"{self.tsv.name} at byte {offset} (image {key})"
        if offset >= self._size:
            raise DamagedImageError(f"{where}: offset is past the end of the file; is {self.index.name} stale?")
        line = self._line(offset).rstrip(b"\r\n")
        found, sep, payload = line.partition(b"\t")
        if not sep or found.strip().decode("utf-8", "replace") != key:
            owner = found[:40].decode("utf-8", "replace")
            raise DamagedImageError(f"{where}: the line there belongs to {owner!r}, not to {key!r}; "
                                    f"{self.index.name} does not match {self.tsv.name}.")
        try:
            return base64.b64decode(payload.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DamagedImageError(f"{where}: not valid base64 ({exc}).") from exc

    def load(self, image_id: str | int) -> Image.Image:
        """Decode one image to RGB (``ciea.images.load_image`` rules); ``DamagedImageError`` if broken."""
        data = self.read_bytes(image_id)
        try:
            return load_image(data)
        except ImageInputError as exc:
            key = parse_image_ref(str(image_id))
            raise DamagedImageError(f"{self.tsv.name} image {key!r}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> "ImageStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()


# --------------------------------------------------------------------------- conversion


def thumbnail_name(doc_id: str) -> str:
    """Thumbnail path of an image document, relative to the corpus folder (sharded by 256)."""
    name = doc_id if _SAFE_NAME.fullmatch(doc_id) else hashlib.sha1(doc_id.encode("utf-8")).hexdigest()
    shard = hashlib.sha1(doc_id.encode("utf-8")).hexdigest()[:2]
    return f"images/{shard}/{name}.jpg"


def save_thumbnail(image: Image.Image, path: Path, side: int = THUMBNAIL_SIDE) -> None:
    """Write ``image`` as a JPEG no larger than ``side`` px, atomically (tmp file + rename)."""
    image = image.copy()
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.convert("RGB").save(tmp, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    os.replace(tmp, path)


@dataclass
class ConversionReport:
    """What ``write_corpus`` wrote: counts, the images it could not use, the query files."""

    corpus: Corpus
    text_docs: int = 0
    image_docs: int = 0
    broken_images: list[str] = field(default_factory=list)
    duplicates: int = 0
    query_files: dict[str, tuple[Path, Path]] = field(default_factory=dict)


def _select(docs: Iterable[Document], limit: int | None, keep: set[str]) -> Iterator[Document]:
    """At most ``limit`` documents: those in ``keep`` first, then others in file order.

    One pass; the others wait in a buffer of at most ``limit`` records until the end shows
    how much room the ``keep`` documents left.
    """
    if limit is None:
        yield from docs
        return
    kept, others = 0, []
    for doc in docs:
        if kept >= limit:
            return
        if doc.doc_id in keep:
            kept += 1
            yield doc
        elif len(others) < limit:
            others.append(doc)
    yield from others[: max(0, limit - kept)]


def _batches(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def write_corpus(
    root: Path | WebQAPaths,
    out_dir: Path,
    limit: int | None = None,
    progress: bool = True,
    *,
    kinds: Sequence[str] = (TEXT, IMAGE),
    side: int = THUMBNAIL_SIDE,
    eval_split: str | None = "test",
    strict: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
) -> ConversionReport:
    """Convert WebQA into the corpus layout at ``out_dir`` (e.g. ``assets/webqa``).

    Writes ``corpus.jsonl`` (text snippets, then images as ``images/xx/<id>.jpg`` thumbnails
    no larger than ``side`` px) and, for every split present, ``queries_<split>.jsonl`` plus
    ``qrels_<split>.json`` restricted to the documents written, ready for
    ``python -m ciea eval --queries ... --qrels ...``.

    ``limit`` keeps at most that many documents of each kind; the positives of
    ``eval_split`` go in first so a small corpus can still be evaluated. Existing thumbnails
    are reused unless ``overwrite`` (so an interrupted run resumes). An image that cannot be
    decoded keeps its document as caption-only text and is listed in the report; with
    ``strict`` it raises instead.
    """
    paths, out_dir = _paths(root), Path(out_dir)
    for kind in kinds:
        paths.require(paths.docs if kind == TEXT else paths.images_meta)
    store = ImageStore.from_root(paths) if IMAGE in kinds else None
    keep: set[str] = set()
    if limit is not None and eval_split and paths.split(eval_split).is_file():
        keep = {d for rels in load_qrels(paths, eval_split).values() for d in rels}

    report = ConversionReport(Corpus(out_dir.name, out_dir, []))
    docs: list[Document] = []
    seen: set[str] = set()

    def add(doc: Document) -> None:
        if doc.doc_id in seen:
            report.duplicates += 1
            return
        seen.add(doc.doc_id)
        docs.append(doc)
        if doc.category == TEXT:
            report.text_docs += 1
        else:
            report.image_docs += 1

    if TEXT in kinds:
        total = limit if limit is not None else _count_lines(paths.docs)
        for doc in tqdm(_select(iter_documents(paths, (TEXT,)), limit, keep), total=total,
                        desc="webqa: texts", unit="doc", disable=not progress):
            add(doc)

    if IMAGE in kinds and store is not None:
        total = limit if limit is not None else _count_lines(paths.images_meta)

        def convert(doc: Document) -> Document:
            rel = thumbnail_name(doc.doc_id)
            target = out_dir / rel
            if overwrite or not target.is_file():
                try:
                    save_thumbnail(store.load(doc.doc_id), target, side)
                except WebQAError as exc:
                    if strict:
                        raise
                    log.warning("image %s left out: %s", doc.doc_id, exc)
                    return Document(doc.doc_id, doc.text, None, IMAGE)
            return Document(doc.doc_id, doc.text, rel, IMAGE)

        n_workers = max(1, workers or min(8, os.cpu_count() or 1))
        selected = _select(iter_documents(paths, (IMAGE,)), limit, keep)
        with store, ThreadPoolExecutor(max_workers=n_workers) as pool, \
                tqdm(total=total, desc="webqa: images", unit="img", disable=not progress) as bar:
            for batch in _batches(selected, 64 * n_workers):  # bounded: never all images in flight
                for done in pool.map(convert, batch):
                    if done.image is None:
                        report.broken_images.append(done.doc_id)
                    add(done)
                bar.update(len(batch))

    if report.duplicates:
        log.warning("skipped %d documents whose id was already used", report.duplicates)
    if report.broken_images:
        log.warning("%d images could not be decoded and were kept as text only: %s",
                    len(report.broken_images), report.broken_images[:10])
    report.corpus = Corpus(out_dir.name, out_dir, docs)
    report.corpus.save()
    for split in paths.splits():
        report.query_files[split] = write_eval_files(paths, split, out_dir, doc_ids=seen)
    return report


def write_eval_files(
    root: Path | WebQAPaths, split: str, out_dir: Path, doc_ids: set[str] | None = None
) -> tuple[Path, Path]:
    """Write ``queries_<split>.jsonl`` and ``qrels_<split>.json`` into ``out_dir``.

    With ``doc_ids``, judgements on other documents are dropped, and so are queries left
    without any relevant document (they could never be answered by that corpus).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    qrels = load_qrels(root, split)
    if doc_ids is not None:
        qrels = {q: {d: r for d, r in rels.items() if d in doc_ids} for q, rels in qrels.items()}
        qrels = {q: rels for q, rels in qrels.items() if rels}
    queries_path, qrels_path = split_query_files(out_dir, split)
    rows = ({"qid": q.qid, "text": q.text} for q in iter_queries(root, split) if q.qid in qrels)
    write_jsonl(queries_path, rows)
    qrels_path.write_text(json.dumps(qrels, ensure_ascii=False) + "\n", encoding="utf-8")
    return queries_path, qrels_path

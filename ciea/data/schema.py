"""Records shared by every corpus: documents, queries, and the corpus on disk.

A corpus lives in ``assets/<name>/``: ``corpus.jsonl`` (one document per line) and the
images it names, relative to that folder. Builders write this layout; everything else
reads only this layout.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

CORPUS_FILE = "corpus.jsonl"


class CorpusError(RuntimeError):
    """A corpus or query file is missing or malformed; the message says which and how."""


@dataclass(frozen=True)
class Document:
    """One image+text document. ``image`` is relative to the corpus folder, or None."""

    doc_id: str
    text: str
    image: str | None = None
    category: str = ""


@dataclass(frozen=True)
class Query:
    """One query of the ``{"qid": str, "text": str}`` JSON-lines contract; ``kind`` (optional)
    groups queries in evaluation (e.g. caption / complementary / image-only)."""

    qid: str
    text: str
    kind: str = ""


@dataclass
class Corpus:
    """A loaded corpus: its documents in a fixed order and the folder images resolve against."""

    name: str
    root: Path
    documents: list[Document]

    def __post_init__(self) -> None:
        self._by_id = {d.doc_id: d for d in self.documents}
        if len(self._by_id) != len(self.documents):
            raise CorpusError(f"Corpus '{self.name}' has duplicate document ids.")

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self) -> Iterator[Document]:
        return iter(self.documents)

    def get(self, doc_id: str) -> Document:
        return self._by_id[doc_id]

    def image_path(self, doc: Document) -> Path | None:
        return None if doc.image is None else self.root / doc.image

    def save(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / CORPUS_FILE
        write_jsonl(path, (asdict(d) for d in self.documents))
        return path


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; malformed lines raise ``CorpusError``."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{lineno}: not valid JSON ({exc.msg}).") from exc
            if not isinstance(obj, dict):
                raise CorpusError(f"{path}:{lineno}: expected a JSON object.")
            yield lineno, obj


def load_corpus(name: str, assets_dir: Path) -> Corpus:
    """Read ``assets_dir/name/corpus.jsonl``."""
    root = assets_dir / name
    path = root / CORPUS_FILE
    if not path.is_file():
        raise CorpusError(
            f"Corpus '{name}' not found at {path}. Known corpora are folders of {assets_dir} "
            f"holding a {CORPUS_FILE}."
        )
    docs = []
    for lineno, obj in read_jsonl(path):
        try:
            docs.append(
                Document(str(obj["doc_id"]), str(obj["text"]), obj.get("image"), obj.get("category", ""))
            )
        except KeyError as exc:
            raise CorpusError(f"{path}:{lineno}: missing field {exc}.") from exc
    return Corpus(name, root, docs)


def split_query_files(corpus_dir: Path, split: str) -> tuple[Path, Path]:
    """Where a corpus ships a split's query set: ``queries_<split>.jsonl``, ``qrels_<split>.json``."""
    return Path(corpus_dir) / f"queries_{split}.jsonl", Path(corpus_dir) / f"qrels_{split}.json"


def load_queries(path: Path) -> list[Query]:
    """Read a queries file of ``{"qid": str, "text": str}`` lines."""
    if not Path(path).is_file():
        raise CorpusError(f"Query file {path} not found.")
    queries = []
    for lineno, obj in read_jsonl(Path(path)):
        if "qid" not in obj or "text" not in obj:
            raise CorpusError(f'{path}:{lineno}: each line needs "qid" and "text".')
        queries.append(Query(str(obj["qid"]), str(obj["text"]), str(obj.get("kind", ""))))
    return queries


def available_corpora(assets_dir: Path) -> list[str]:
    """Names of the servable corpora present under ``assets_dir`` (training-only ones excluded)."""
    from ciea.config import TRAINING_ONLY_CORPORA

    if not assets_dir.is_dir():
        return []
    return sorted(p.name for p in assets_dir.iterdir()
                  if (p / CORPUS_FILE).is_file() and p.name not in TRAINING_ONLY_CORPORA)

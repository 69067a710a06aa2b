"""Images that are stored as data (scene layouts) become files only when needed.

Corpora whose folder holds ``layouts.jsonl`` render their images from the stamp thumbnails:
all at once before index building, one at a time when a result is shown.
"""

from __future__ import annotations

from pathlib import Path

from ciea.data.schema import Corpus, Document

STAMPS_CORPUS = "stamps"


def _renders(corpus: Corpus) -> bool:
    from ciea.data.scenes import LAYOUTS_FILE

    return (corpus.root / LAYOUTS_FILE).is_file()


def ensure_corpus_images(corpus: Corpus, progress: bool = True) -> int:
    """Render every missing image of a layout corpus; returns how many were drawn."""
    if not _renders(corpus):
        return 0
    from ciea.data.scenes import ensure_rendered

    return ensure_rendered(corpus.root, corpus.root.parent / STAMPS_CORPUS, progress=progress)


def document_image(corpus: Corpus, doc: Document) -> Path | None:
    """The image file of ``doc``, rendering it first if it is a not-yet-drawn scene."""
    path = corpus.image_path(doc)
    if path is None or path.is_file() or not _renders(corpus):
        return path
    from ciea.data.scenes import render_one

    return render_one(corpus.root, corpus.root.parent / STAMPS_CORPUS, Path(doc.image).stem)

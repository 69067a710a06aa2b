"""The catalogue: which corpora exist, and each retriever's loaded index or why it has none.

A damaged or mismatched index disables only its own retriever; the reason is kept (with
server paths made relative) and shown, and the other retrievers keep answering. The backbone,
corpora and indexes load on first use, once per process, whichever thread asks first.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from ciea.backbones import Backbone, load_backbone
from ciea.config import Settings
from ciea.data.schema import Corpus, available_corpora, load_corpus
from ciea.index import MANIFEST_FILE, Expectation, IndexStoreError, VectorIndex
from ciea.memo import Memo
from ciea.retrievers import REGISTRY, Retriever, create_retriever
from ciea.validation import InputError, check_corpus, echo

log = logging.getLogger(__name__)


def retriever_title(name: str) -> str:
    """The short UI label of retriever ``name`` (its class says it; unknown names stay as they are)."""
    return REGISTRY[name].title if name in REGISTRY else name


@dataclass
class RetrieverState:
    """A retriever and its index for one corpus, or why it is unavailable."""

    name: str
    retriever: Retriever | None = None
    index: VectorIndex | None = None
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.index is not None


class Catalogue:
    """Corpora by name and, per corpus, every registered retriever's state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._backbone_lock = threading.Lock()
        self._backbone: Backbone | None = None
        self._corpora: Memo[Corpus] = Memo()
        self._states: Memo[dict[str, RetrieverState]] = Memo()
        self._positions: Memo[dict[str, int]] = Memo()

    @property
    def backbone(self) -> Backbone:
        with self._backbone_lock:
            if self._backbone is None:
                self._backbone = load_backbone(self.settings.backbone)
            return self._backbone

    def corpora(self) -> list[str]:
        return available_corpora(self.settings.assets_dir)

    def corpus(self, name: str) -> Corpus:
        if not isinstance(name, str) or name not in self._corpora:
            check_corpus(name, self.corpora())  # refuses non-text and unknown names with a message
        return self._corpora.get(name, lambda: load_corpus(name, self.settings.assets_dir))

    def position(self, corpus: str, doc_id: str) -> int:
        """The row of ``doc_id`` in corpus order."""
        docs = self.corpus(corpus)
        return self._positions.get(corpus, lambda: {d.doc_id: i for i, d in enumerate(docs)})[doc_id]

    def states(self, corpus: str) -> dict[str, RetrieverState]:
        """Every registered retriever for ``corpus``, loaded or with its error."""
        self.corpus(corpus)  # validates the name first
        return self._states.get(corpus, lambda: {name: self._load_state(corpus, name) for name in REGISTRY})

    def retriever(self, corpus: str, name: str) -> RetrieverState:
        states = self.states(corpus)
        if not isinstance(name, str) or name not in states:
            raise InputError(f"Unknown retriever {echo(name)}. Known: {', '.join(states)}.")
        return states[name]

    def retrievers(self, corpus: str) -> list[str]:
        """Names of the retrievers that can answer on ``corpus``."""
        return [name for name, st in self.states(corpus).items() if st.ready]

    def unavailable(self, corpus: str) -> dict[str, str]:
        return {name: st.error or "" for name, st in self.states(corpus).items() if not st.ready}

    def indexed_retrievers(self, corpus: str) -> list[str]:
        """Registered retrievers with an index folder for ``corpus``: the loaded ones when
        loading already happened, else a file check (no backbone, so a page can render at once)."""
        if corpus in self._states:
            return self.retrievers(corpus)
        return [name for name in REGISTRY if (self.settings.index_dir(corpus, name) / MANIFEST_FILE).is_file()]

    def _load_state(self, corpus: str, name: str) -> RetrieverState:
        try:
            retriever = create_retriever(name, self.backbone, self.settings)
            expect = Expectation(corpus, name, self.backbone.spec, retriever.dim, retriever.checkpoint_sha256)
            index = VectorIndex.load(self.settings.index_dir(corpus, name), expect)
        except (IndexStoreError, OSError, ValueError) as exc:
            log.warning("retriever %s unavailable for %s: %s", name, corpus, exc)
            return RetrieverState(name, error=self._public(str(exc)))
        return RetrieverState(name, retriever, index)

    def _public(self, reason: str) -> str:
        """A reason fit for users: server paths shown relative to the artefact folders (the log
        keeps the full text)."""
        from ciea.config import PROJECT_ROOT

        for folder, label in ((self.settings.checkpoints_dir, "indexes/checkpoints"),
                              (self.settings.indexes_dir, "indexes"), (self.settings.assets_dir, "assets"),
                              (PROJECT_ROOT, ".")):
            reason = reason.replace(str(folder.resolve()), label).replace(str(folder), label)
        return reason

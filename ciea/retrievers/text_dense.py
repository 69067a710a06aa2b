"""text-dense: captions only, through the frozen text tower (the caption-only reference)."""

from __future__ import annotations

import numpy as np

from ciea.data.schema import Corpus
from ciea.features import CorpusFeatures
from ciea.retrievers.base import Retriever


class TextDenseRetriever(Retriever):
    name = "text-dense"
    title = "Text only (captions)"

    @property
    def dim(self) -> int:
        return self.backbone.text_dim

    def towers(self) -> str:
        return f"text: {self.backbone.text_tower}; images ignored"

    def encode_documents(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        return features.text

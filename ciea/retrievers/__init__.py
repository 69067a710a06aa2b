"""Retriever registry: names (the CLI and index contract) to classes."""

from __future__ import annotations

from ciea.backbones import Backbone
from ciea.retrievers.base import Retriever
from ciea.config import Settings
from ciea.retrievers.ciea import CIEARetriever
from ciea.retrievers.dual import DualFusedRetriever, DualGCLRetriever, DualSplitRetriever
from ciea.retrievers.text_dense import TextDenseRetriever

REGISTRY: dict[str, type[Retriever]] = {
    cls.name: cls
    for cls in (TextDenseRetriever, DualSplitRetriever, DualFusedRetriever, DualGCLRetriever, CIEARetriever)
}
#: Retrievers with trainable heads (``python -m ciea train --retriever NAME``), as the classes say.
TRAINABLE = tuple(name for name, cls in REGISTRY.items() if cls.trainable)


class UnknownRetrieverError(KeyError):
    def __str__(self) -> str:
        return f"Unknown retriever {self.args[0]!r}. Known: {', '.join(REGISTRY)}."


def retriever_names() -> list[str]:
    return list(REGISTRY)


def create_retriever(name: str, backbone: Backbone, settings: Settings | None = None) -> Retriever:
    """An instance of retriever ``name``; trained ones load their checkpoint from ``settings``.

    Raises ``CheckpointError`` (a ValueError) when a trained retriever has no usable checkpoint.
    """
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise UnknownRetrieverError(name) from None
    return cls(backbone, settings=settings)


__all__ = ["REGISTRY", "TRAINABLE", "Retriever", "UnknownRetrieverError", "create_retriever", "retriever_names"]

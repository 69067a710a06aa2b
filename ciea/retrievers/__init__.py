"""Retriever registry: names (the CLI and index contract) to classes."""

from __future__ import annotations

from ciea.backbones import Backbone
from ciea.retrievers.base import Retriever
from ciea.retrievers.dual import DualFusedRetriever, DualSplitRetriever
from ciea.retrievers.text_dense import TextDenseRetriever

REGISTRY: dict[str, type[Retriever]] = {
    cls.name: cls for cls in (TextDenseRetriever, DualSplitRetriever, DualFusedRetriever)
}


class UnknownRetrieverError(KeyError):
    def __str__(self) -> str:
        return f"Unknown retriever {self.args[0]!r}. Known: {', '.join(REGISTRY)}."


def retriever_names() -> list[str]:
    return list(REGISTRY)


def create_retriever(name: str, backbone: Backbone) -> Retriever:
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise UnknownRetrieverError(name) from None
    return cls(backbone)


__all__ = ["REGISTRY", "Retriever", "UnknownRetrieverError", "create_retriever", "retriever_names"]

"""Corpora and query sets: records, loaders and builders."""

from ciea.data.schema import Corpus, CorpusError, Document, Query, load_corpus, load_queries

__all__ = ["Corpus", "CorpusError", "Document", "Query", "load_corpus", "load_queries"]

"""CIEA Explorer: compare CIEA with CLIP-style baselines on image+text retrieval."""

__version__ = "0.1.0"

"""The saved geometry of each retriever (``python -m ciea geometry``): its report and UMAP
projection, loaded once per process, and the exact-W2 recompute the Geometry tab offers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ciea.config import Settings
from ciea.memo import Memo
from ciea.validation import InputError

#: Largest per-side sample a user may ask the live exact-W2 recompute for: POT's exact EMD is
#: cubic in the sample size, and about 2k per side still answers within a minute on 2 cores.
MAX_W2_SAMPLES = 2000
MIN_W2_SAMPLES = 10


def geometry_hint(corpus: str, retriever: str) -> str:
    """How to build a retriever's geometry artefacts (report, UMAP, clouds)."""
    return f"Build them with: python -m ciea geometry --corpus {corpus} --retriever {retriever}"


def check_w2_samples(n) -> int:
    """The per-side sample size of an exact-W2 recompute, as a whole number within the limits."""
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise InputError("The sample size must be a whole number.") from None
    if not MIN_W2_SAMPLES <= n <= MAX_W2_SAMPLES:
        raise InputError(f"The sample size must be between {MIN_W2_SAMPLES} and {MAX_W2_SAMPLES} "
                         f"(exact optimal transport is cubic in it); got {n}.")
    return n


@dataclass
class GeometryArtefacts:
    """A retriever's saved geometry report and UMAP projection, each None with the reason."""

    report: dict | None = None
    projection: object | None = None  # ciea.geometry.Projection
    errors: list[str] = field(default_factory=list)


class GeometryStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._artefacts: Memo[GeometryArtefacts] = Memo()

    def artefacts(self, corpus: str, name: str) -> GeometryArtefacts:
        """The saved report and projection of retriever ``name`` on ``corpus`` (names checked by the caller)."""
        return self._artefacts.get((corpus, name), lambda: self._load(corpus, name))

    def _load(self, corpus: str, name: str) -> GeometryArtefacts:
        from ciea import geometry

        folder = self.settings.index_dir(corpus, name)
        if not any((folder / f).exists() for f in (geometry.REPORT_FILE, geometry.PROJECTION_META)):
            missing = f"No geometry artefacts for {name} on {corpus} yet. {geometry_hint(corpus, name)}"
            return GeometryArtefacts(errors=[missing])
        out = GeometryArtefacts()
        try:
            out.report = geometry.load_report(folder)
        except (geometry.GeometryStoreError, OSError) as exc:
            out.errors.append(f"Geometry report of {name} on {corpus}: {exc}.")
        try:
            out.projection = geometry.Projection.load(folder)
        except (geometry.GeometryStoreError, OSError) as exc:
            out.errors.append(f"UMAP projection of {name} on {corpus}: {exc}.")
        return out

    def recompute_w2(self, corpus: str, name: str, n):
        """Exact W2 between the saved image and text clouds on a fixed-seed sample of ``n`` per
        side (returns ``ciea.geometry.W2Result``)."""
        from ciea import geometry

        n = check_w2_samples(n)
        projection = self.artefacts(corpus, name).projection
        if projection is None:
            raise InputError(f"{name} has no saved embedding clouds on {corpus}. {geometry_hint(corpus, name)}")
        rows = projection.offsets()
        missing = {"image", "text"} - set(rows)
        if missing:
            raise InputError(f"{name}'s saved clouds lack {', '.join(sorted(missing))} vectors.")
        image, text = (projection.points[slice(*rows[c])].astype(np.float32) for c in ("image", "text"))
        return geometry.wasserstein2(image, text, max_samples=n, seed=0)

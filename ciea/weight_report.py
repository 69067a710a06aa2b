"""Do CIEA's complementarity weights mean something? Measured on scenes, whose layouts say
which patches show the captioned object, which show objects the caption omits, and which
show background.

A patch belongs to the object whose box covers the largest share of it, when that share is
at least half; otherwise it is background. Scenes are square, so the 7 x 7 grid (or the
head's pooled grid) tiles the canvas evenly.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ciea.data.scenes import SceneLayout

ROLES = ("captioned", "omitted", "background")


def patch_roles(layout: SceneLayout, side: int) -> np.ndarray:
    """(side * side,) role index per patch, row-major: 0 captioned, 1 omitted, 2 background."""
    cell = layout.size / side
    roles = np.full(side * side, 2, np.int64)
    for r in range(side):
        for c in range(side):
            x0, y0 = c * cell, r * cell
            best, share = 2, 0.5
            for obj in layout.objects:
                ox = max(0.0, min(x0 + cell, obj.x + obj.w) - max(x0, obj.x))
                oy = max(0.0, min(y0 + cell, obj.y + obj.h) - max(y0, obj.y))
                covered = ox * oy / (cell * cell)
                if covered >= share:
                    best, share = (0 if obj.role == "primary" else 1), covered
            roles[r * side + c] = best
    return roles


def weight_separation(layouts: Sequence[SceneLayout], weights: np.ndarray) -> dict[str, float]:
    """Mean weight per role over every patch of every scene, and omitted - captioned.

    ``weights`` (scenes, patches) in layout order. The separation is what the heat map can
    show: positive when patches the caption omits weigh more than the captioned object's.
    """
    side = int(round(math.sqrt(weights.shape[1])))
    sums, counts = np.zeros(3), np.zeros(3)
    for layout, w in zip(layouts, weights):
        roles = patch_roles(layout, side)
        np.add.at(sums, roles, w)
        np.add.at(counts, roles, 1)
    means = {role: float(sums[i] / counts[i]) if counts[i] else float("nan") for i, role in enumerate(ROLES)}
    return {**{f"mean_w_{k}": round(v, 4) for k, v in means.items()},
            "separation": round(means["omitted"] - means["captioned"], 4),
            "scenes": len(layouts), "patches": {k: int(counts[i]) for i, k in enumerate(ROLES)}}

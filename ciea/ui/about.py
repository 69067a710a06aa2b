"""The About tab: what CIEA does, which towers each retriever uses, how to switch to CLIP,
and where the data comes from. Text only; tower names come from the loaded retrievers."""

from __future__ import annotations

import html
from collections.abc import Mapping

from ciea.config import BACKBONE_ENV, CHECKPOINTS_ENV, INDEXES_ENV

METHOD = """
### What CIEA does

A caption says only part of what an image shows. Retrievers that align each image with its caption
keep the part both share and drop the rest, so a query that names something visible only in the
picture ("a bicycle *beside an elephant*") misses. **CIEA** (Complementary Information Extraction and
Alignment; Zeng et al., ACL 2025) keeps the rest: it weighs each image patch by how little the
caption covers it (the heat map in a CIEA result's detail view), lets those patches dominate one
attention layer, and encodes the weighted patches together with the caption in one language model.
Training adds a second loss that matches queries, with the caption's words removed, against the
image side alone.

The **scenes** corpus is built to measure exactly this: each scene's caption names one object, the
picture shows two or three, and its *complementary* test queries name an object only the picture shows.
The **emoji** corpus is real drawings (OpenMoji) captioned with their names only ("A banana."); its
*attribute* queries ask for what the drawing shows and the name does not say ("a purple fruit").

Here CIEA's document is also anchored on its caption, normalise(caption vector + g x CIEA vector)
with a learned g, and the language model's outputs are pooled by learned attention: our extensions
for a small frozen language model, in which 49 patch tokens otherwise drown a short caption.
"""

SWITCH = f"""
### Switching to a real CLIP backbone

The embedded default runs offline on towers that ship inside pip wheels. On a host with network
access, select open_clip towers with one spec string, then train the heads for those towers, build
the indexes (with geometry) and evaluate, in that order:

```bash
export {BACKBONE_ENV}=open_clip:ViT-B-32:laion2b_s34b_b79k
export {INDEXES_ENV}=indexes-clip           # keep the committed offline indexes
export {CHECKPOINTS_ENV}=indexes-clip/checkpoints
python -m ciea train                        # dual-split, dual-fused, dual-gcl, then ciea
python -m ciea build --corpus stamps && python -m ciea build --corpus scenes && python -m ciea build --corpus emoji
python -m ciea eval --corpus scenes --split test && python -m ciea eval --corpus emoji --split test
python app.py
```

Every index records the backbone and checkpoint it was built with; an index built with other towers
or weights is refused with the exact rebuild command, so the app never mixes spaces. Without
`python -m ciea train` the dual encoders fall back to CLIP's shared space and CIEA is unavailable.
"""

PAPERS = """
### Papers

- **CIEA** (the method this demo is about): Zeng et al., *Enhancing Multimodal Retrieval via Complementary
  Information Extraction and Alignment*, ACL 2025. [arXiv:2601.04571](https://arxiv.org/abs/2601.04571)
- **GCL**, the loss of the `dual-gcl` baseline: Lee et al., *Generalized Contrastive Learning for Universal
  Multimodal Retrieval*, NeurIPS 2025. [arXiv:2509.25638](https://arxiv.org/abs/2509.25638)
- A further paper the demo's brief cites: [arXiv:2506.08774](https://arxiv.org/abs/2506.08774) (its title
  is not recorded in this repository; follow the link).

### How to cite

Cite the method, not this demo:

```bibtex
@inproceedings{zeng2025ciea,
  title     = {Enhancing Multimodal Retrieval via Complementary Information Extraction and Alignment},
  author    = {Zeng and others},
  booktitle = {Proceedings of the Annual Meeting of the Association for Computational Linguistics (ACL)},
  year      = {2025},
  note      = {arXiv:2601.04571}
}
```
"""

LICENCES = """
### Data and licences

- **stamps**: the Tux Paint stamp collection (Debian package `tuxpaint-stamps-default`),
  Copyright 2002-2022 Bill Kendrick and contributors, GPL-2 or later; thumbnails and captions are
  shipped in `assets/stamps` with `COPYING` and `ATTRIBUTION.md`.
- **scenes**: generated from the stamps (same licence), deterministic from seed 0.
- **emoji**: OpenMoji 17.0.0 by the OpenMoji project (openmoji.org), CC BY-SA 4.0, thumbnails in
  `assets/emoji` with `ATTRIBUTION.md`. The heads also trained on Noto Color Emoji (Apache-2.0) and
  Twemoji (CC BY 4.0) drawings of other concepts; keywords from emojibase-data and emojilib (MIT).
- all-MiniLM-L6-v2: Apache-2.0. EfficientNet-Lite0 ImageNet weights: Apache-2.0. Code: GPL-2.0.
"""


def alignment_sentence(backbone: str, alignments: Mapping[str, str]) -> str:
    """One sentence on how the dual encoders place images in the text space, read from the
    retrievers actually served (trained maps, or ConSE where no checkpoint exists)."""
    if backbone != "bundled" or not alignments:
        return ""
    by_kind: dict[str, list[str]] = {}
    for name, how in alignments.items():
        by_kind.setdefault(how, []).append(f"`{html.escape(name)}`")
    parts = [f"{', '.join(names)} by a {html.escape(how)}" if "trained" in how
             else f"{', '.join(names)} by {html.escape(how)}" for how, names in by_kind.items()]
    conse = ("" if "ConSE" not in alignments.values() else
             " ConSE is the training-free fallback: the probability-weighted mean of the text embeddings of an "
             "image's top ImageNet class names.")
    trained = ("" if not any("trained" in how for how in alignments.values()) else
               " A trained map is a linear head learned with `python -m ciea train` on top of both frozen towers.")
    return ("The bundled dual encoder is **not CLIP**: its image tower is an ImageNet classifier (EfficientNet-Lite0) "
            f"placed into the text tower's space; here {'; '.join(parts)}.{trained}{conse}")


def towers_markdown(backbone: str, towers: Mapping[str, str], titles: Mapping[str, str],
                    unavailable: Mapping[str, str], alignments: Mapping[str, str] | None = None) -> str:
    """A table of which towers each retriever uses on this host, plus the unavailable ones."""
    lines = [f"### Retrievers on this host (backbone `{html.escape(backbone)}`)", "",
             "| retriever | what it is | towers |", "|---|---|---|"]
    lines += [f"| `{html.escape(n)}` | {html.escape(titles.get(n, n))} | {html.escape(t)} |"
              for n, t in towers.items()]
    if unavailable:
        lines += ["", "Not available on this host (their index is missing or was built differently):", ""]
        lines += [f"- `{html.escape(n)}`: {html.escape(why)}" for n, why in unavailable.items()]
    sentence = alignment_sentence(backbone, alignments or {})
    if sentence:
        lines += ["", sentence]
    return "\n".join(lines)


def about_markdown(towers: str) -> str:
    """The whole About tab; ``towers`` is ``towers_markdown(...)`` or a loading note."""
    return f"{METHOD}\n{towers}\n{SWITCH}\n{PAPERS}\n{LICENCES}"

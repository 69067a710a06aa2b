"""Build the stamps corpus from the Tux Paint stamp collection.

Source: the Debian package ``tuxpaint-stamps-default`` (GPL-2), installed under
``/usr/share/tuxpaint/stamps``. A stamp is a PNG or SVG with a sibling ``.txt`` whose first
line is its English description; the folder path gives its category. Where a stamp ships as
both SVG and PNG, Tux Paint shows the SVG, and so do we (one document per stamp).
Document id = image path relative to the stamps root, extension included.

The output is the corpus layout of ``ciea.data.schema`` plus small WebP thumbnails, the
licence and an attribution file, so the app never needs the Debian package.
"""

from __future__ import annotations

import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ciea.data.schema import Corpus, Document

log = logging.getLogger(__name__)

DEFAULT_SOURCE = Path("/usr/share/tuxpaint/stamps")
DEBIAN_COPYRIGHT = Path("/usr/share/doc/tuxpaint-stamps-default/copyright")
THUMBNAIL_SIDE = 256
THUMBNAIL_QUALITY = 82
IMAGE_SUFFIXES = (".svg", ".png")  # preference order when both exist

ATTRIBUTION = """# Stamps corpus: attribution and licence

Images and descriptions come from the Tux Paint stamp collection
(Debian package `tuxpaint-stamps-default`, version {version}),
Copyright 2002-2022 Bill Kendrick and the Tux Paint contributors,
distributed under the GNU General Public License version 2 or later (see COPYING).
Upstream: https://tuxpaint.org/ and http://sourceforge.net/projects/tuxpaint

This folder holds {count} stamps as thumbnails (longest side {side} px, WebP) and their
first-line English descriptions, converted by `python -m ciea build-assets --corpus stamps`.
"""


@dataclass(frozen=True)
class StampSource:
    """One stamp found in the source tree."""

    doc_id: str
    image_path: Path
    description: str
    category: str


def read_description(txt_path: Path) -> str:
    """First non-empty line of a stamp's .txt file (the English description)."""
    raw = txt_path.read_bytes().decode("utf-8", errors="replace")
    for line in raw.splitlines():
        line = line.strip().lstrip("\ufeff")
        if line:
            return line
    return ""


def find_stamps(source: Path) -> list[StampSource]:
    """Every stamp under ``source`` that has a description, one per stem, sorted by id."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(
            f"Stamps directory {source} not found. Install it with "
            "`apt-get install tuxpaint-stamps-default` or pass --source DIR."
        )
    found: dict[Path, StampSource] = {}
    for suffix in reversed(IMAGE_SUFFIXES):  # later suffixes overwrite: SVG wins over PNG
        for image_path in sorted(source.rglob(f"*{suffix}")):
            txt = image_path.with_suffix(".txt")
            if not txt.is_file():
                continue
            description = read_description(txt)
            if not description:
                continue
            rel = image_path.relative_to(source)
            found[rel.with_suffix("")] = StampSource(
                doc_id=rel.as_posix(),
                image_path=image_path,
                description=description,
                category=rel.parent.as_posix(),
            )
    return sorted(found.values(), key=lambda s: s.doc_id)


def render_stamp(path: Path, side: int = THUMBNAIL_SIDE) -> Image.Image:
    """The stamp as an RGBA image whose longest side is at most ``side``."""
    if path.suffix.lower() == ".svg":
        import cairosvg

        png = cairosvg.svg2png(url=str(path), output_width=side * 2)
        image = Image.open(io.BytesIO(png))
    else:
        image = Image.open(path)
    image = image.convert("RGBA")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def thumbnail_name(doc_id: str) -> str:
    return f"thumbs/{doc_id}.webp"


def build_stamps_corpus(
    source: Path = DEFAULT_SOURCE,
    out_dir: Path = Path("assets/stamps"),
    side: int = THUMBNAIL_SIDE,
    licence_file: Path | None = DEBIAN_COPYRIGHT,
    package_version: str = "unknown",
    progress: bool = True,
) -> Corpus:
    """Convert the stamp tree at ``source`` into a corpus folder at ``out_dir``."""
    stamps = find_stamps(source)
    out_dir = Path(out_dir)
    if (out_dir / "thumbs").exists():
        shutil.rmtree(out_dir / "thumbs")
    docs: list[Document] = []
    skipped = []
    for stamp in tqdm(stamps, desc="stamps", unit="img", disable=not progress):
        candidates = [stamp.image_path] + [
            stamp.image_path.with_suffix(s) for s in IMAGE_SUFFIXES if s != stamp.image_path.suffix
        ]
        for image_path in (p for p in candidates if p.is_file()):
            try:
                image = render_stamp(image_path, side)
                break
            except Exception as exc:  # a broken stamp file must not stop the whole build
                log.warning("could not render %s: %s", image_path, exc)
        else:
            skipped.append(stamp.doc_id)
            continue
        rel = thumbnail_name(stamp.doc_id)
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(out_dir / rel, "WEBP", quality=THUMBNAIL_QUALITY, method=6)
        docs.append(Document(stamp.doc_id, stamp.description, rel, stamp.category))
    if skipped:
        log.warning("skipped %d stamps that could not be rendered: %s", len(skipped), skipped[:10])
    corpus = Corpus("stamps", out_dir, docs)
    corpus.save()
    if licence_file is not None and Path(licence_file).is_file():
        shutil.copyfile(licence_file, out_dir / "COPYING")
    (out_dir / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(version=package_version, count=len(docs), side=side), encoding="utf-8"
    )
    return corpus


def package_version(package: str = "tuxpaint-stamps-default") -> str:
    """Installed Debian package version, for the attribution file ('unknown' elsewhere)."""
    import subprocess

    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"

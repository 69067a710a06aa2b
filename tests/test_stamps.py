"""The stamps corpus builder on a tiny Tux-Paint-like directory the test makes."""

from __future__ import annotations

from PIL import Image

from ciea.data.schema import load_corpus
from ciea.data.stamps import build_stamps_corpus, find_stamps

from conftest import draw_shape

SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="120" height="60">
<rect x="10" y="10" width="100" height="40" fill="#c00"/></svg>"""


def make_source(root):
    (root / "animals" / "mammals").mkdir(parents=True)
    (root / "vehicles").mkdir()
    draw_shape("circle", (128, 128, 128), 600).save(root / "animals/mammals/elephant.png")
    (root / "animals/mammals/elephant.txt").write_text("An elephant.\nde.utf8=Ein Elefant.\n", encoding="utf-8")
    # Both SVG and PNG for one stem: one document, the SVG (as Tux Paint shows it).
    (root / "vehicles/bus.svg").write_text(SVG, encoding="utf-8")
    draw_shape("square", (250, 200, 0)).save(root / "vehicles/bus.png")
    (root / "vehicles/bus.txt").write_text("\n  A red bus.  \nfr.utf8=Un bus rouge.\n", encoding="utf-8")
    # No description: not a stamp.
    draw_shape("triangle", (0, 0, 0)).save(root / "vehicles/undescribed.png")
    # Sound and data files next to stamps are ignored.
    (root / "vehicles/bus_desc_fr.ogg").write_bytes(b"OggS")
    return root


def test_find_stamps_ids_descriptions_categories(tmp_path):
    stamps = find_stamps(make_source(tmp_path / "src"))
    assert [s.doc_id for s in stamps] == ["animals/mammals/elephant.png", "vehicles/bus.svg"]
    assert [s.description for s in stamps] == ["An elephant.", "A red bus."]
    assert [s.category for s in stamps] == ["animals/mammals", "vehicles"]


def test_build_writes_corpus_thumbnails_and_licence(tmp_path):
    source = make_source(tmp_path / "src")
    licence = tmp_path / "copyright"
    licence.write_text("License: GPL-2\n", encoding="utf-8")
    out = tmp_path / "assets" / "stamps"
    build_stamps_corpus(source, out, side=128, licence_file=licence, package_version="1.0", progress=False)

    corpus = load_corpus("stamps", tmp_path / "assets")
    assert [d.doc_id for d in corpus] == ["animals/mammals/elephant.png", "vehicles/bus.svg"]
    for doc in corpus:
        with Image.open(corpus.image_path(doc)) as thumb:
            assert max(thumb.size) <= 128 and thumb.format == "WEBP"
    with Image.open(corpus.image_path(corpus.get("vehicles/bus.svg"))) as bus:
        # Rendered from the SVG (a red bar, 2:1), not from the yellow square PNG.
        assert bus.size[0] == 2 * bus.size[1]
        r, g, b, a = bus.convert("RGBA").getpixel((bus.size[0] // 2, bus.size[1] // 2))
        assert r > 150 and g < 60 and a == 255
    assert (out / "COPYING").read_text(encoding="utf-8") == "License: GPL-2\n"
    attribution = (out / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "GNU General Public License" in attribution and "2 stamps" in attribution


def test_shipped_stamps_assets_are_complete(repo_root):
    corpus = load_corpus("stamps", repo_root / "assets")
    assert len(corpus) > 900
    assert all(corpus.image_path(d).is_file() for d in corpus)
    assert corpus.get("animals/mammals/elephant.png").text == "An elephant."
    total = sum(corpus.image_path(d).stat().st_size for d in corpus)
    assert total < 25 * 2**20
    assert (repo_root / "assets/stamps/COPYING").is_file()

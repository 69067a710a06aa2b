"""WebQA loader on a tiny fixture written in the exact UniVL-DR/MARVEL file layout."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ciea.data.schema import CorpusError, Query, load_corpus, load_queries
from ciea.data.webqa import (
    IMAGE,
    TEXT,
    DamagedImageError,
    ImageStore,
    UnknownImageError,
    WebQAError,
    WebQAPaths,
    image_ref,
    iter_documents,
    iter_examples,
    iter_queries,
    join_title,
    load_qrels,
    write_corpus,
)
from ciea.images import load_image

# image id -> (colour, size); ints, as in all_imgs.json of the real data
IMAGES = {
    30000001: ((220, 30, 30), (40, 30)),
    30000002: ((30, 180, 60), (32, 32)),
    30000003: ((40, 60, 220), (640, 480)),  # larger than a thumbnail
    30000004: ((230, 210, 40), (24, 48)),
}
IMAGE_TITLES = {30000001: "Red flag", 30000002: "", 30000003: "Blue door", 30000004: "Yellow taxi"}
SNIPPETS = [
    {"snippet_id": "d5bb0001aa", "title": "Red Square", "fact": "The square in Moscow is paved with stones."},
    {"snippet_id": "d5bb0002bb", "title": "Taxi", "fact": "Taxi cabs in New York are yellow."},
    {"snippet_id": "d5bb0003cc", "title": "Doors", "fact": "Doors are often painted blue in Greece."},
]
SPLITS = {
    "train": [
        ("tr1", "What colour is the flag?", ["30000001"], ["d5bb0001aa"]),
        ("tr2", "Which colour are taxis?", ["30000004"], ["d5bb0002bb"]),
        ("tr3", "Is the field green?", ["30000002"], []),
    ],
    "dev": [
        ("dv1", "A green field?", ["30000002"], []),
        ("dv2", "Moscow square?", [], ["d5bb0001aa"]),
        ("dv3", "Yellow car?", ["30000004"], []),
    ],
    "test": [
        ("te1", '"What colour is the door?"\r', ["30000003"], ["d5bb0003cc"]),
        ("te2", "Which taxi is yellow?", ["30000004"], []),
        ("te3", "Where are doors blue?", [], ["d5bb0003cc"]),
    ],
}


def jpeg_bytes(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def make_webqa(root: Path, payloads: dict[int, bytes] | None = None) -> dict[int, int]:
    """Write the fixture; ``payloads`` replaces the base64 field of some imgs.tsv lines.
    Returns image id -> byte offset of its line."""
    root.mkdir(parents=True, exist_ok=True)
    payloads = payloads or {}

    def lines(path: Path, rows) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    lines(root / "all_docs.json", SNIPPETS)
    lines(root / "all_imgs.json", [{"image_id": i, "title": IMAGE_TITLES[i], "caption": f"A {name} picture."}
                                   for i, name in zip(IMAGES, ["red", "green", "blue", "yellow"])])
    for split, rows in SPLITS.items():
        all_imgs, all_txts = [str(i) for i in IMAGES], [s["snippet_id"] for s in SNIPPETS]
        lines(root / f"{split}.json", [
            {"qid": qid, "Q": q, "A": "an answer", "img_posFacts": img, "txt_posFacts": txt,
             "img_negFacts": [i for i in all_imgs if i not in img],
             "txt_negFacts": [t for t in all_txts if t not in txt]}
            for qid, q, img, txt in rows])
    (root / "test_qrels.txt").write_text(
        "".join(f"{qid}\t{d}\t1\n" for qid, _, img, txt in SPLITS["test"] for d in img + txt), encoding="utf-8")
    offsets, tsv = {}, bytearray()
    for image_id, (colour, size) in IMAGES.items():
        offsets[image_id] = len(tsv)
        payload = payloads.get(image_id, base64.b64encode(jpeg_bytes(colour, size)))
        tsv += f"{image_id}\t".encode() + payload + b"\n"
    (root / "imgs.tsv").write_bytes(bytes(tsv))
    # index order differs from file order on purpose: it is a map, not a list
    (root / "imgs.lineidx.new").write_text(
        "".join(f"{i}\t{offsets[i]}\n" for i in reversed(list(IMAGES))), encoding="utf-8")
    return offsets


def assert_colour(image: Image.Image, colour: tuple[int, int, int], tol: int = 12) -> None:
    arr = np.asarray(image.convert("RGB"), dtype=np.int16)
    h, w = arr.shape[:2]
    centre = arr[h // 4 : 3 * h // 4 + 1, w // 4 : 3 * w // 4 + 1].reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(centre - np.array(colour)) <= tol), (centre, colour)


@pytest.fixture
def webqa(tmp_path: Path) -> Path:
    make_webqa(tmp_path / "WebQA")
    return tmp_path / "WebQA"


def test_documents_ids_texts_and_image_refs(webqa):
    docs = list(iter_documents(webqa))
    assert [d.doc_id for d in docs] == [s["snippet_id"] for s in SNIPPETS] + [str(i) for i in IMAGES]
    text = {d.doc_id: d for d in docs if d.category == TEXT}
    assert text["d5bb0002bb"].text == "Taxi cabs in New York are yellow."  # title already leads the fact
    assert text["d5bb0001aa"].text == "Red Square: The square in Moscow is paved with stones."
    assert all(d.image is None for d in text.values())
    assert join_title("Red", "Reddish skies") == "Red: Reddish skies" and join_title("T", "") == "T"
    images = {d.doc_id: d for d in docs if d.category == IMAGE}
    assert images["30000001"].text == "Red flag: A red picture."
    assert images["30000002"].text == "A green picture."  # no title
    assert images["30000003"].image == "imgs.tsv#30000003" == image_ref(30000003)
    assert [d.doc_id for d in iter_documents(webqa, kinds=(IMAGE,))] == [str(i) for i in IMAGES]


def test_store_decodes_every_image_with_its_colour(webqa):
    with ImageStore.from_root(webqa) as store:
        assert len(store) == 4 and 30000002 in store and "30000002" in store and "999" not in store
        for image_id, (colour, size) in IMAGES.items():
            image = store.load(image_id)
            assert image.size == size and image.mode == "RGB"
            assert_colour(image, colour)
        assert_colour(store.load("imgs.tsv#30000004"), IMAGES[30000004][0])  # a Document.image ref works too


def test_store_seeks_to_an_image_in_the_middle_of_the_file(tmp_path):
    # The first line is garbage, so only a seek to the indexed offset can find the third image.
    offsets = make_webqa(tmp_path / "w", payloads={30000001: b"%%% not base64 %%%"})
    store = ImageStore.from_root(tmp_path / "w")
    middle = 30000003
    assert store.offset(middle) == offsets[middle] > offsets[30000002] > 0
    image = store.load(middle)
    assert image.size == (640, 480)
    assert_colour(image, IMAGES[middle][0])
    with pytest.raises(DamagedImageError, match="base64") as err:
        store.load(30000001)
    assert isinstance(err.value, CorpusError) and "30000001" in str(err.value)


def test_store_reports_damaged_jpeg_unknown_id_and_stale_index(tmp_path):
    make_webqa(tmp_path / "w", payloads={30000002: base64.b64encode(b"\xff\xd8 this is not a jpeg")})
    store = ImageStore.from_root(tmp_path / "w")
    with pytest.raises(DamagedImageError, match="30000002"):
        store.load(30000002)
    assert_colour(store.load(30000004), IMAGES[30000004][0])  # the line after it is fine

    with pytest.raises(UnknownImageError, match="'12345' is not in imgs.lineidx.new") as err:
        store.load(12345)
    assert isinstance(err.value, CorpusError)

    index = tmp_path / "w" / "imgs.lineidx.new"
    rows = [line.split("\t") for line in index.read_text().splitlines()]
    rows[0][1], rows[1][1] = rows[1][1], rows[0][1]  # swap two offsets
    index.write_text("".join(f"{a}\t{b}\n" for a, b in rows))
    with pytest.raises(DamagedImageError, match="does not match"):
        ImageStore.from_root(tmp_path / "w").load(rows[0][0])
    index.write_text("30000001\n")
    with pytest.raises(WebQAError, match=r"imgs.lineidx.new:1: expected"):
        ImageStore.from_root(tmp_path / "w")


def test_missing_files_are_named(webqa, tmp_path):
    (webqa / "imgs.lineidx.new").unlink()
    with pytest.raises(WebQAError, match=r"imgs\.lineidx\.new is missing"):
        ImageStore.from_root(webqa)
    (webqa / "all_docs.json").unlink()
    with pytest.raises(WebQAError, match=r"all_docs\.json is missing"):
        iter_documents(webqa)  # fails on the call, before any iteration
    with pytest.raises(WebQAError, match=r"WebQA folder .*nowhere not found"):
        WebQAPaths(tmp_path / "nowhere").require(WebQAPaths(tmp_path / "nowhere").docs)
    (webqa / "dev.json").unlink()
    with pytest.raises(WebQAError, match=r"dev\.json is missing.*available splits: train, test"):
        list(iter_queries(webqa, "dev"))


def test_queries_and_examples(webqa):
    queries = list(iter_queries(webqa, "test"))
    assert queries[0] == Query("te1", "What colour is the door?")  # quotes and \r cleaned
    assert [q.qid for q in queries] == ["te1", "te2", "te3"]
    ex = next(iter_examples(webqa, "train"))
    assert ex.img_pos == ("30000001",) and ex.txt_pos == ("d5bb0001aa",)
    assert "30000001" not in ex.img_neg and len(ex.img_neg) == 3 and ex.answer == "an answer"


def test_qrels_test_from_file_train_from_posfacts(webqa):
    expected = {"te1": {"30000003": 1, "d5bb0003cc": 1}, "te2": {"30000004": 1}, "te3": {"d5bb0003cc": 1}}
    (webqa / "test.json").unlink()  # test qrels must come from test_qrels.txt alone
    assert load_qrels(webqa, "test") == expected
    assert load_qrels(webqa, "train") == {
        "tr1": {"30000001": 1, "d5bb0001aa": 1}, "tr2": {"30000004": 1, "d5bb0002bb": 1}, "tr3": {"30000002": 1}}
    assert load_qrels(webqa, "dev")["dv2"] == {"d5bb0001aa": 1}
    (webqa / "test_qrels.txt").write_text("te1\td5bb0003cc\n")
    with pytest.raises(WebQAError, match=r"test_qrels\.txt:1"):
        load_qrels(webqa, "test")


def test_write_corpus_round_trip(webqa, tmp_path):
    assets = tmp_path / "assets"
    report = write_corpus(webqa, assets / "webqa", progress=False, workers=2)
    assert (report.text_docs, report.image_docs, report.broken_images) == (3, 4, [])
    corpus = load_corpus("webqa", assets)
    assert [d.doc_id for d in corpus] == [s["snippet_id"] for s in SNIPPETS] + [str(i) for i in IMAGES]
    assert corpus.get("d5bb0001aa").image is None
    assert corpus.get("30000001").text == "Red flag: A red picture."
    for image_id, (colour, size) in IMAGES.items():
        doc = corpus.get(str(image_id))
        assert doc.image and not Path(doc.image).is_absolute() and ".." not in doc.image
        image = load_image(corpus.image_path(doc))  # exactly how the index builder reads it
        assert max(image.size) <= 384
        assert_colour(image, colour)
    assert load_image(corpus.image_path(corpus.get("30000003"))).size == (384, 288)
    queries = load_queries(assets / "webqa" / "queries_test.jsonl")
    assert [q.qid for q in queries] == ["te1", "te2", "te3"]
    qrels = json.loads((assets / "webqa" / "qrels_test.json").read_text())
    assert qrels == load_qrels(webqa, "test")
    assert set(report.query_files) == {"train", "dev", "test"}


def test_write_corpus_limit_keeps_test_positives_first(webqa, tmp_path):
    report = write_corpus(webqa, tmp_path / "small", limit=1, progress=False)
    ids = [d.doc_id for d in report.corpus]
    # d5bb0003cc is the last snippet in the file but the only text positive of the test split
    assert ids == ["d5bb0003cc", "30000003"]
    qrels = json.loads((tmp_path / "small" / "qrels_test.json").read_text())
    assert qrels == {"te1": {"30000003": 1, "d5bb0003cc": 1}, "te3": {"d5bb0003cc": 1}}
    assert [q.qid for q in load_queries(tmp_path / "small" / "queries_test.jsonl")] == ["te1", "te3"]


def test_write_corpus_keeps_broken_image_as_text_or_raises_when_strict(tmp_path):
    make_webqa(tmp_path / "w", payloads={30000002: b"!!broken!!"})
    report = write_corpus(tmp_path / "w", tmp_path / "out", progress=False)
    assert report.broken_images == ["30000002"]
    doc = report.corpus.get("30000002")
    assert doc.image is None and doc.text == "A green picture."
    assert load_corpus("out", tmp_path).get("30000001").image is not None
    with pytest.raises(DamagedImageError):
        write_corpus(tmp_path / "w", tmp_path / "strict", progress=False, strict=True, overwrite=True)


def test_command_line(webqa, tmp_path, capsys, monkeypatch):
    from ciea.cli import main as cli_main
    from ciea.config import ASSETS_ENV

    monkeypatch.setenv(ASSETS_ENV, str(tmp_path))
    assert cli_main(["build-assets", "--corpus", "webqa", "--source", str(webqa), "--limit", "2"]) == 0
    docs = list(load_corpus("webqa", tmp_path))
    assert len(docs) == 4 and [d.doc_id for d in docs if d.image] == ["30000003", "30000004"]
    assert cli_main(["build-assets", "--corpus", "webqa", "--source", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err

"""The app as users and API clients meet it.

Three layers: the pure UI pieces (HTML, overlay, figures) with hand-computed expectations;
the service methods the UI needs, on the tiny corpus; and every endpoint of ``python app.py``
(launched once per session by conftest's ``app_url``) called with gradio_client.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from conftest import GEOMETRY_REPORT, GEOMETRY_SHIFT, write_synthetic_geometry
from PIL import Image

from ciea.data.schema import split_query_files, write_jsonl
from ciea.geometry import load_report
from ciea.images import ImageInputError
from ciea.service import ResultRow, SearchResponse, SearchService, normalise_query
from ciea.ui.detail import DetailActions
from ciea.ui.geometry_tab import expected_seconds
from ciea.ui.heatmap import MAX_ALPHA, TINT, heat_map, patch_overlay, stretch
from ciea.ui.plots import statistics_rows, umap_figure
from ciea.ui.benchmark import benchmark_rows, mrr_interval
from ciea.ui.examples import curated, examples_for, expectation
from ciea.ui.results import (
    SCORES_NOTE,
    Verdict,
    best_columns,
    column_verdict,
    results_html,
    thumbnail_urls,
    ties,
)
from ciea.validation import InputError

ROOT = Path(__file__).resolve().parent.parent
ELEPHANT = "animals/mammals/elephant.png"
ELEPHANT_THUMB = ROOT / "assets" / "stamps" / "thumbs" / "animals" / "mammals" / "elephant.png.webp"


# -- pure UI pieces ------------------------------------------------------------------------------

def test_captions_and_ids_are_escaped_in_result_cards():
    evil = '<img src=x onerror=alert(1)>'
    row = ResultRow(1, evil, 0.5, evil, None, "x")
    html = results_html(SearchResponse("q", "c", 1, {"text-dense": [row]}, [evil]), {"text-dense": evil})
    assert "<img src=x" not in html and html.count("&lt;img src=x onerror=alert(1)&gt;") >= 3


def test_relevant_cards_are_marked_for_eyes_and_screen_readers():
    rows = [ResultRow(1, "a.png", 0.9, "An apple.", None, "food", relevant=True),
            ResultRow(2, "b.png", 0.8, "A bus.", None, "vehicles")]
    html = results_html(SearchResponse("an apple", "c", 2, {"text-dense": rows}, judged=True), {})
    cards = re.findall(r'<div class="ciea-card"[^>]*>', html)
    assert len(cards) == 2
    assert 'data-relevant="true"' in cards[0] and "(judged relevant)" in cards[0]
    assert "data-relevant" not in cards[1] and "judged relevant" not in cards[1]
    assert html.count("&#10003;") == 1 and "(1 shown)" in html
    unjudged = results_html(SearchResponse("q", "c", 2, {"text-dense": rows[1:]}), {})
    assert "No relevance judgements" in unjudged


def test_results_are_aligned_by_rank_with_empty_cells_for_short_columns():
    long = [ResultRow(i, f"d{i}", 1 - i / 10, f"doc {i}", None, "") for i in (1, 2, 3)]
    html = results_html(SearchResponse("q", "c", 3, {"a": long, "b": long[:1]}), {})
    columns = re.findall(r'<section class="ciea-col" style="--c:(\d+)"(.*?)</section>', html)
    assert [c for c, _ in columns] == ["1", "2"]
    # each card sits in its rank's grid row (rows 1 and 2 are the header and the verdict)
    rows = [re.findall(r'class="ciea-card"[^>]*style="grid-row:(\d+)"[^>]*data-rank="(\d+)"', body)
            for _, body in columns]
    assert rows == [[("3", "1"), ("4", "2"), ("5", "3")], [("3", "1")]]


def test_verdict_per_column_for_judged_queries_marks_the_best():
    def rows(relevant_ranks, k=4):
        return [ResultRow(r, f"d{r}", 1 - r / 10, f"doc {r}", None, "", relevant=r in relevant_ranks)
                for r in range(1, k + 1)]

    results = {"a": rows({2, 4}), "b": rows({1}), "c": rows(set())}
    assert column_verdict(results["a"]) == Verdict(2, 0.5, 2, 4)
    assert column_verdict(results["c"]).text == "no relevant result in the top 4 · RR 0.00"
    verdicts = {n: column_verdict(r) for n, r in results.items()}
    assert best_columns(verdicts) == {"b"}
    assert best_columns({"x": Verdict(1, 1.0, 2, 4), "y": Verdict(1, 1.0, 2, 4)}) == {"x", "y"}
    assert best_columns({"x": Verdict(None, 0.0, 0, 4)}) == set()  # nothing found: no winner
    html = results_html(SearchResponse("q", "c", 4, results, judged=True), {})
    verdict_cells = re.findall(r'<div class="ciea-verdict"[^>]*data-retriever="(\w)"([^>]*)>', html)
    assert [(n, "data-best" in rest) for n, rest in verdict_cells] == [("a", False), ("b", True), ("c", False)]
    assert "first relevant at rank 2 · RR 0.50 · 2 of 4 relevant" in html
    assert SCORES_NOTE in html and "ciea-mark" not in html  # judged: no hand-marking


def test_unjudged_results_offer_marks_and_a_verdict_waiting_for_them():
    rows = [ResultRow(r, f"d{r}", 0.5, f"doc {r}", None, "") for r in (1, 2)]
    html = results_html(SearchResponse("q", "c", 2, {"a": rows, "b": rows[:1]}), {})
    assert html.count('class="ciea-mark"') == 3
    assert html.count("data-manual") == 2 and "mark relevant results to score the top 2" in html


def test_ties_are_flagged_with_their_count():
    scores = [0.9, 0.634, 0.634, 0.634, 0.5, 0.4, 0.4]
    rows = [ResultRow(i, f"d{i}", s, "x", None, "") for i, s in enumerate(scores, 1)]
    assert ties(rows) == {2: (3, False), 3: (3, False), 4: (3, False), 6: (2, True), 7: (2, True)}
    html = results_html(SearchResponse("q", "c", 7, {"a": rows}), {})
    assert html.count("tie: 3 documents share this score") == 3
    assert html.count("tie: 2 or more documents share this score") == 2


def test_every_curated_example_is_judged_and_says_who_should_win():
    service = SearchService()
    examples = curated()
    assert examples, "no curated examples"
    for corpus, chosen in examples.items():
        if corpus not in service.corpora():
            continue
        for example in chosen:
            assert service.relevant(corpus, example.text), f"{corpus}: {example.text!r} is not judged"
            assert example.expect.startswith("Expected:") and example.kind


def test_a_corpus_without_curated_examples_gets_judged_queries(tiny_built, tmp_path):
    service = SearchService(tiny_built)
    empty = tmp_path / "examples.json"
    empty.write_text("{}", encoding="utf-8")
    chosen = examples_for(service, "tiny", empty)
    assert 0 < len(chosen) <= 4
    assert all(service.relevant("tiny", e.text) for e in chosen)
    assert expectation(chosen, chosen[0].text.upper()) == chosen[0].expect


def test_unavailable_retrievers_become_one_collapsed_note():
    response = SearchResponse("q", "c", 1, {}, ["dual-gcl is unavailable: no checkpoint", "other"],
                              skipped={"dual-gcl": "no checkpoint"})
    html = results_html(response, {})
    assert "<details" in html and "dual-gcl" in html and html.count("no checkpoint") == 1
    assert '<div class="ciea-notice" role="status">other</div>' in html


def test_patch_overlay_tints_each_patch_by_its_weight():
    white = Image.new("RGB", (40, 40), (255, 255, 255))
    out = np.asarray(patch_overlay(white, np.array([[1.0, 0.0], [0.0, 0.5]]), size=4), dtype=int)
    full = [round(255 * (1 - MAX_ALPHA) + c * MAX_ALPHA) for c in TINT]
    half = [round(255 * (1 - MAX_ALPHA / 2) + c * MAX_ALPHA / 2) for c in TINT]
    assert out[:2, :2].reshape(-1, 3).tolist() == [full] * 4
    assert out[2:, 2:].reshape(-1, 3).tolist() == [half] * 4
    assert out[:2, 2:].reshape(-1, 3).tolist() == [[255, 255, 255]] * 4


def test_patch_overlay_uses_the_towers_square_padding():
    black_strip = Image.new("RGB", (4, 2), (0, 0, 0))  # padded to 4x4: a white row above and below
    out = np.asarray(patch_overlay(black_strip, np.zeros((2, 2)), size=4))
    assert out[[0, 3]].max() == 255 and out[[0, 3]].min() == 255 and out[1:3].max() == 0
    with pytest.raises(ValueError, match="square grid"):
        patch_overlay(black_strip, np.zeros((2, 3)))


def test_geometry_statistics_come_from_the_report_with_their_intervals():
    rows = {r[0]: r[1:] for r in statistics_rows(GEOMETRY_REPORT)}
    assert rows["centroid gap"][:3] == [0.8125, 0.8, 0.825]
    assert rows["Wasserstein-2, exact"][:3] == [0.5, 0.49, 0.51] and "n = 500" in rows["Wasserstein-2, exact"][3]
    assert rows["Wasserstein-2, sliced"][:3] == [0.125, "", ""]
    assert rows["cosine, matched image-caption pairs"][0] == 0.375
    assert statistics_rows({"centroid_gap": 0.25}) == [["centroid gap", 0.25, "", "", ""]]


def test_w2_progress_expects_cubic_cost():
    assert expected_seconds({"n": 500, "seconds": 0.25}, 1000) == pytest.approx(2.0)
    assert expected_seconds({}, 1000) is None


def test_umap_figure_marks_the_query_and_the_document():
    coords = {"text": np.zeros((3, 2)), "image": np.ones((3, 2)), "document": np.full((3, 2), 2.0)}
    fig = umap_figure(coords, ["a", "b", "c"], ["1", "2", "3"], ["x/y", "x", "z"], "category",
                      query_xy=np.array([5.0, 6.0]), query_label="q", highlight=1)
    names = [t.name for t in fig.data]
    assert names.count("x") == 3 and names.count("z") == 3  # one trace per top category and cloud
    query = next(t for t in fig.data if t.name == "query")
    assert (query.x[0], query.y[0]) == (5.0, 6.0)
    doc = next(t for t in fig.data if t.name == "this document")
    assert list(doc.x) == [0.0, 1.0, 2.0]  # row 1 of each cloud


def test_query_normalisation_ignores_case_spacing_and_final_punctuation():
    assert normalise_query("  A   Frog. ") == normalise_query("a frog") == "a frog"


# -- service methods for the UI (tiny corpus) ----------------------------------------------------

@pytest.fixture(scope="module")
def judged_settings(tiny_built, tmp_path_factory):
    """The tiny corpus with two shipped query sets: the same text judged in both splits."""
    assets = tmp_path_factory.mktemp("judged") / "assets"
    shutil.copytree(tiny_built.assets_dir, assets, symlinks=True)
    root = assets / "tiny"
    for split, rows, qrels in [
        ("test", [{"qid": "t1", "text": "A round red toy", "kind": "complementary"}],
         {"t1": {"shapes/red-circle.png": 1}}),
        ("dev", [{"qid": "d1", "text": "a round red toy.", "kind": "complementary"}],
         {"d1": {"food/orange.png": 1, "animals/frog.png": 0}}),
    ]:
        queries_path, qrels_path = split_query_files(root, split)
        write_jsonl(queries_path, rows)
        qrels_path.write_text(json.dumps(qrels), encoding="utf-8")
    return dataclasses.replace(tiny_built, assets_dir=assets)


def test_relevance_marks_union_the_splits_and_drilldown_uses_one_query(judged_settings):
    service = SearchService(judged_settings)
    assert service.query_splits("tiny") == ["dev", "test"]
    assert service.relevant("tiny", "a round red toy") == {"shapes/red-circle.png", "food/orange.png"}
    response = service.search("A ROUND red toy", "tiny", ["text-dense"], 6)
    assert response.judged
    assert {r.doc_id for r in response.results["text-dense"] if r.relevant} == {"shapes/red-circle.png",
                                                                                   "food/orange.png"}
    query, drilled = service.search_judged("tiny", "test", "t1", ["text-dense"], 6)
    assert query.kind == "complementary"
    assert {r.doc_id for r in drilled.results["text-dense"] if r.relevant} == {"shapes/red-circle.png"}
    unjudged = service.search("a blue box", "tiny", ["text-dense"], 6)
    assert not unjudged.judged and not any(r.relevant for r in unjudged.results["text-dense"])
    with pytest.raises(InputError, match="No query"):
        service.search_judged("tiny", "test", "nope")


def test_without_shipped_queries_each_caption_finds_its_own_document(tiny_built):
    service = SearchService(tiny_built)
    assert service.query_splits("tiny") == ["captions"]
    assert service.relevant("tiny", "a frog") == {"animals/frog.png"}
    rows = service.search("A frog.", "tiny", ["text-dense"], 3).results["text-dense"]
    assert rows[0].doc_id == "animals/frog.png" and rows[0].relevant


def test_image_queries_use_image_towers_and_skip_caption_only_retrievers(tiny_built, tmp_path):
    from conftest import draw_shape

    path = tmp_path / "query.png"
    draw_shape("circle", (220, 30, 30)).save(path)
    service = SearchService(tiny_built)
    response = service.search_by_image(str(path), "tiny", ["text-dense", "dual-fused"], 3)
    assert response.mode == "image" and response.query == "query.png"
    assert list(response.results) == ["dual-fused"] and len(response.results["dual-fused"]) == 3
    assert any(n.startswith("text-dense takes text queries only") for n in response.notices)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageInputError):
        service.search_by_image(str(tmp_path / "broken.png"), "tiny", ["dual-fused"], 3)
    with pytest.raises(InputError, match="Upload an image"):
        service.search_by_image(None, "tiny", ["dual-fused"], 3)


def test_document_view_and_patch_weights(tiny_built, monkeypatch):
    service = SearchService(tiny_built)
    view = service.document("tiny", "food/orange.png")
    assert (view.position, view.text) == (3, "An orange fruit.") and view.image.is_file()
    assert service.patch_weights("tiny", "dual-fused", "food/orange.png") is None  # no such method
    seen = []

    def weights(images, captions):
        seen.append((images[0].size, captions))
        return np.array([[[1.5, 0.25], [-1.0, 0.5]]])

    monkeypatch.setattr(service.retriever("tiny", "dual-split").retriever, "patch_weights", weights, raising=False)
    got = service.patch_weights("tiny", "dual-split", "food/orange.png")
    assert got.tolist() == [[1.0, 0.25], [0.0, 0.5]]  # clipped to [0, 1]
    assert seen == [((96, 96), ["An orange fruit."])]
    with pytest.raises(InputError, match="No document"):
        service.document("tiny", "nope.png")


def test_geometry_artefacts_missing_then_present(tiny_built, tmp_path):
    service = SearchService(tiny_built)
    missing = service.geometry("tiny", "text-dense")
    assert missing.report is None and missing.projection is None
    assert "python -m ciea geometry --corpus tiny --retriever text-dense" in missing.errors[0]

    indexes = tmp_path / "indexes"
    shutil.copytree(tiny_built.indexes_dir, indexes)
    folder = indexes / "tiny" / "text-dense"
    vectors = service.backbone.encode_text([d.text for d in service.corpus("tiny")])
    write_synthetic_geometry(folder, vectors)
    service = SearchService(dataclasses.replace(tiny_built, indexes_dir=indexes))
    present = service.geometry("tiny", "text-dense")
    assert present.errors == [] and present.report["centroid_gap"] == GEOMETRY_REPORT["centroid_gap"]
    # A query equal to a caption duplicates that caption's vector (in the text and document clouds),
    # and UMAP's duplicate rule places a duplicate exactly on the point it duplicates.
    point = service.query_point("tiny", "text-dense", "A frog.")
    frog = service.document("tiny", "animals/frog.png").position
    coords = present.projection.coords
    assert any(np.allclose(point, coords[cloud][frog]) for cloud in ("text", "document"))
    # The image cloud is the text cloud translated by GEOMETRY_SHIFT: W2 is exactly that length.
    result = service.recompute_w2("tiny", "text-dense", 10)
    assert result.n == 6 and result.distance == pytest.approx(GEOMETRY_SHIFT, abs=5e-3)
    for bad in (5, 100_000, "many"):
        with pytest.raises(InputError, match="sample size"):
            service.recompute_w2("tiny", "text-dense", bad)


def test_detail_map_sends_its_clouds_once_then_only_the_markers(tiny_built, tmp_path):
    indexes = tmp_path / "indexes"
    shutil.copytree(tiny_built.indexes_dir, indexes)
    service = SearchService(dataclasses.replace(tiny_built, indexes_dir=indexes))
    vectors = service.backbone.encode_text([d.text for d in service.corpus("tiny")])
    write_synthetic_geometry(indexes / "tiny" / "text-dense", vectors)
    detail = DetailActions(service)
    coords = service.geometry("tiny", "text-dense").projection.coords
    frog = service.document("tiny", "animals/frog.png").position

    info, _, plot, marks, key = detail.document("tiny", "text-dense", "animals/frog.png", "a frog")
    assert "A frog." in info and key == "tiny/text-dense" and marks["key"] == key
    figure = json.loads(plot.plot)
    assert figure["layout"]["meta"]["ciea_map"] == key
    thumbs = figure["layout"]["meta"]["thumbs"]
    assert thumbs["base"].startswith("/gradio_api/file=") and "frog" in thumbs["paths"][frog]
    by_name = {t["name"]: t for t in figure["data"]}
    assert "customdata" in by_name["image"] and "customdata" not in by_name["text"]  # captions have no picture
    assert by_name["this document"]["x"] == marks["this document"]["x"] == [
        round(float(coords[c][frog][0]), 4) for c in coords]
    assert len(marks["query"]["x"]) == 1 and [t["name"] for t in figure["data"]][-2:] == ["this document", "query"]

    # the browser already shows these clouds: the plot is left alone and only the markers travel
    _, _, plot, later, key = detail.document("tiny", "text-dense", "food/orange.png", "", shown_map=key)
    assert plot == gr.skip() and key == "tiny/text-dense"
    assert later["query"]["x"] == [] and len(later["this document"]["x"]) == len(coords)
    assert len(json.dumps(later)) * 20 < len(plot_payload := json.dumps(figure)) and plot_payload
    assert later["sent"] is False and marks["sent"] is True
    # the page may hold several maps; a retriever without one gets a notice and the keys stay
    _, _, plot, marks, key = detail.document("tiny", "dual-fused", "food/orange.png", "",
                                             shown_map="other/ciea|tiny/text-dense")
    assert key == "other/ciea|tiny/text-dense" and marks == {}
    assert "No geometry artefacts" in json.dumps(plot.to_plotly_json())
    _, _, plot, _, key = detail.document("tiny", "text-dense", "food/orange.png", "", shown_map="other/ciea")
    assert key == "other/ciea|tiny/text-dense" and json.loads(plot.plot)["layout"]["meta"]["ciea_map"] == "tiny/text-dense"


def test_about_links_the_three_papers():
    from ciea.ui.about import about_markdown

    text = about_markdown("")
    for arxiv in ("2601.04571", "2509.25638", "2506.08774"):
        assert f"[arXiv:{arxiv}](https://arxiv.org/abs/{arxiv})" in text
    assert "Enhancing Multimodal Retrieval via Complementary" in text and "How to cite" in text


def test_thumbnail_urls_share_one_prefix():
    urls = thumbnail_urls([Path("/srv/a/thumbs/x y.png"), None, Path("/srv/a/thumbs/sub/z.png")])
    assert urls["base"] == "/gradio_api/file=/srv/a/thumbs/"
    assert urls["paths"] == ["x%20y.png", None, "sub/z.png"]
    assert thumbnail_urls([None, None]) == {"base": "", "paths": [None, None]}


# -- the launched app ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def plot_data(plot: dict) -> list[dict]:
    """The traces of a gr.Plot output as gradio_client returns it."""
    assert plot["type"] == "plotly"
    return json.loads(plot["plot"])["data"]


def test_search_endpoint_returns_results_side_by_side(client, app_url):
    html, data = client.predict("an elephant", "stamps", ["text-dense", "dual-fused"], 5, api_name="/search")
    assert list(data["results"]) == ["text-dense", "dual-fused"]
    assert all(len(rows) == 5 for rows in data["results"].values())
    top = data["results"]["text-dense"][0]
    assert top["doc_id"] == ELEPHANT and top["relevant"] and data["judged"]
    assert html.count('class="ciea-card"') == 10 and html.count('data-relevant="true"') >= 1
    thumb = re.search(r'src="(/gradio_api/file=[^"]+)"', html).group(1)
    with urllib.request.urlopen(app_url.rstrip("/") + thumb, timeout=10) as resp:
        assert resp.status == 200 and resp.read(4) == b"RIFF"  # WebP


def test_bad_input_gets_a_message_and_the_server_keeps_answering(client):
    html, data = client.predict("   ", "stamps", ["text-dense"], 5, api_name="/search")
    assert data == {"error": "Type a query: the text was empty."} and "ciea-notice" in html
    _, data = client.predict("a frog", "stamps", [], 5, api_name="/search")
    assert "at least one retriever" in data["error"]
    _, data = client.predict("a frog", "stamps", ["text-dense"], 3, api_name="/search")
    assert len(data["results"]["text-dense"]) == 3


def parse_tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every start tag of ``html`` with its (entity-decoded) attributes, as a browser reads them."""
    from html.parser import HTMLParser

    tags = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, dict(attrs)))

    Collector().feed(html)
    return tags


def test_query_markup_is_not_rendered(client):
    evil = "<img src=x onerror=alert(1)>"
    html, data = client.predict(evil, "stamps", ["text-dense"], 3, api_name="/search")
    tags = parse_tags(html)
    assert not any("onerror" in attrs for _, attrs in tags)  # nothing of the query becomes markup
    assert not any(tag == "img" and attrs.get("src") == "x" for tag, attrs in tags)
    # kept as text, for the detail view
    assert [a["data-query"] for t, a in tags if a.get("class") == "ciea-results"] == [evil]
    assert data["query"] == evil


def test_only_assets_are_served(client, app_url):
    for path in ("/gradio_api/file=/etc/passwd", f"/gradio_api/file={ROOT / 'app.py'}"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(app_url.rstrip("/") + path, timeout=10)
        assert info.value.code in (403, 404)


def test_scenes_results_render_their_images_on_demand(client, app_url):
    html, data = client.predict("a blue bicycle beside an elephant", "scenes", ["text-dense", "dual-fused"], 3,
                                api_name="/search")
    assert all(len(rows) == 3 for rows in data["results"].values())
    assert all(r["doc_id"].startswith("scene-") for r in data["results"]["dual-fused"])
    assert data["judged"]  # a shipped test query: its relevant scene is known
    thumb = re.search(r'src="(/gradio_api/file=[^"]+)"', html).group(1)
    with urllib.request.urlopen(app_url.rstrip("/") + thumb, timeout=10) as resp:
        assert resp.status == 200 and resp.read(8) == b"\x89PNG\r\n\x1a\n"


def test_emoji_corpus_is_served_with_judged_natural_queries(client, app_url):
    queries = [json.loads(line) for line in (ROOT / "assets" / "emoji" / "queries_test.jsonl").open()]
    qrels = json.loads((ROOT / "assets" / "emoji" / "qrels_test.json").read_text())
    name = next(q for q in queries if q["kind"] == "name")
    html, data = client.predict(name["text"], "emoji", ["text-dense", "dual-fused", "ciea"], 5, api_name="/search")
    assert data["corpus"] == "emoji" and data["judged"]
    assert set(data["results"]) == {"text-dense", "dual-fused", "ciea"}
    assert {r["doc_id"] for r in data["results"]["text-dense"]} & set(qrels[name["qid"]])  # the name finds it
    assert all(r["relevant"] == (r["doc_id"] in qrels[name["qid"]]) for r in data["results"]["ciea"])
    thumb = re.search(r'src="(/gradio_api/file=[^"]+)"', html).group(1)
    with urllib.request.urlopen(app_url.rstrip("/") + thumb, timeout=10) as resp:
        assert resp.status == 200 and resp.read(4) == b"RIFF"  # the committed WebP thumbnail


def test_search_by_image_endpoint(client, tmp_path):
    from gradio_client import handle_file

    html, data = client.predict(handle_file(str(ELEPHANT_THUMB)), "stamps", ["text-dense", "dual-fused"], 5,
                                api_name="/search_by_image")
    assert data["mode"] == "image" and list(data["results"]) == ["dual-fused"]
    assert ELEPHANT in [r["doc_id"] for r in data["results"]["dual-fused"]]  # the image finds itself
    assert any("text queries only" in n for n in data["notices"]) and html.count('class="ciea-card"') == 5
    bogus = tmp_path / "bogus.png"
    bogus.write_bytes(b"this is not an image")
    html, data = client.predict(handle_file(str(bogus)), "stamps", ["dual-fused"], 5, api_name="/search_by_image")
    assert "error" in data and "ciea-notice" in html


def test_document_endpoint_shows_the_image_relevance_and_map(client):
    info, image, plot, marks, key = client.predict("stamps", "text-dense", ELEPHANT, "an elephant",
                                                   api_name="/document")
    assert "An elephant." in info and "<b>relevant</b>" in info and "only CIEA" in info
    assert Path(image).is_file()
    traces = {t["name"] for t in plot_data(plot)}
    assert {"text", "image", "document", "this document", "query"} <= traces
    assert key == "stamps/text-dense" and len(marks["query"]["x"]) == 1
    info, _, _, _, _ = client.predict("stamps", "text-dense", "no/such.png", "", api_name="/document")
    assert "No document" in info


def test_geometry_endpoint_shows_the_saved_report(client):
    scatter, table, chart, gap, notes = client.predict("stamps", "text-dense", "category", "an elephant",
                                                       api_name="/geometry")
    rows = {r[0]: r[1:] for r in table["data"]}
    assert rows["centroid gap"][:3] == [0.8125, 0.8, 0.825]
    assert rows["Wasserstein-2, exact"][0] == 0.5 and notes == ""
    traces = plot_data(scatter)
    assert all(t["type"] == "scattergl" for t in traces if t["name"] != "query")
    assert any(t["name"] == "animals" for t in traces) and any(t["name"] == "query" for t in traces)
    assert {t["name"] for t in plot_data(chart)} == {"text-dense", "dual-fused"}  # both have reports
    assert [p["y"] for p in plot_data(gap)] == [[0.5, 0.625, 0.75]]
    # stamps/dual-split's real artefacts are left out of the launched app's index folder
    _, table, _, _, notes = client.predict("stamps", "dual-split", "modality", "", api_name="/geometry")
    assert table["data"] in ([], [[""] * 5], [["", "", "", "", ""]]) or not table["data"][0][0]
    assert "python -m ciea geometry --corpus stamps --retriever dual-split" in notes
    # scenes shows the committed report as built
    saved = load_report(ROOT / "indexes" / "scenes" / "ciea")
    _, table, _, _, notes = client.predict("scenes", "ciea", "modality", "", api_name="/geometry")
    rows = {r[0]: r[1:] for r in table["data"]}
    assert rows["centroid gap"][0] == pytest.approx(saved["centroid_gap"], abs=1e-3) and notes == ""


def test_recompute_w2_endpoint_matches_the_closed_form(client):
    text = client.predict("stamps", "text-dense", 200, api_name="/recompute_w2")
    value = float(re.search(r"W2 = ([0-9.]+)", text).group(1))
    assert value == pytest.approx(GEOMETRY_SHIFT, abs=5e-3) and "200 image" in text
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="minimum"):  # the slider's bounds hold for API calls too
        client.predict("stamps", "text-dense", 5, api_name="/recompute_w2")


def test_benchmark_and_drilldown_endpoints(client):
    table, chart = client.predict("scenes", "test", "mrr@10", api_name="/benchmark")
    report = json.loads((ROOT / "indexes" / "scenes" / "eval_test.json").read_text())
    expected = report["metrics"]["text-dense"]["complementary"]["mrr@10"]
    row = next(r for r in table["data"] if r[1] == "text-dense · complementary")
    assert row[table["headers"].index("mrr@10")] == expected
    assert {t["name"] for t in plot_data(chart)} >= {"all", "caption", "complementary", "image-only"}
    _html, data = client.predict("scenes", "test", "test-comp-00001", 10, api_name="/drilldown")
    qrels = json.loads((ROOT / "assets" / "scenes" / "qrels_test.json").read_text())["test-comp-00001"]
    assert data["qid"] == "test-comp-00001" and data["judged"]
    for rows in data["results"].values():
        assert all(r["relevant"] == (r["doc_id"] in qrels) for r in rows)
    _, data = client.predict("scenes", "test", "no-such-query", 10, api_name="/drilldown")
    assert "No query" in data["error"]


def test_every_api_name_is_documented_in_the_readme(app_url):
    config = json.loads(urllib.request.urlopen(app_url.rstrip("/") + "/config", timeout=10).read())
    names = {d["api_name"] for d in config["dependencies"] if d.get("api_name")}
    assert {"search", "search_by_image", "document", "geometry", "recompute_w2", "benchmark", "drilldown"} <= names
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # one example event per corpus, documented once as /example_<corpus> (and Gradio's loaders)
    per_corpus = re.compile(r"example_\w+|load_example_input(_\d+)?")
    assert "`/example_<corpus>`" in readme and "`/load_example_input`" in readme
    assert not [n for n in sorted(names) if f"`/{n}`" not in readme and not per_corpus.fullmatch(n)]


def test_heat_map_contrast_is_stretched_within_the_image():
    w = np.array([[0.42, 0.45], [0.46, 0.49]], dtype=np.float32)
    s = stretch(w)
    assert s.min() == 0.0 and s.max() == pytest.approx(1.0)
    assert s[0, 1] == pytest.approx((0.45 - 0.42) / 0.07, abs=1e-5)
    assert not stretch(np.full((2, 2), 0.5)).any()  # a flat grid stays untinted


def test_heat_map_uses_a_fixed_scale_unless_stretched():
    white = Image.new("RGB", (40, 40), (255, 255, 255))
    w = np.array([[0.40, 0.45], [0.45, 0.50]], dtype=np.float32)
    fixed = np.asarray(heat_map(white, w), dtype=int)
    stretched = np.asarray(heat_map(white, w, stretched=True), dtype=int)
    assert fixed.shape[0] == stretched.shape[0] > fixed.shape[1]  # the colour bar sits under the image
    corner = (5, 5)  # a patch corner, clear of the printed weight
    half = [round(255 * (1 - MAX_ALPHA * 0.4) + c * MAX_ALPHA * 0.4) for c in TINT]
    assert fixed[corner].tolist() == half  # weight 0.40 tints 40% of the way, whatever the others are
    assert stretched[corner].tolist() == [255, 255, 255]  # the image's lowest weight: untinted when stretched


def test_benchmark_rows_count_queries_per_kind_and_show_intervals():
    report = {"queries": 10, "metrics": {"a": {"all": {"mrr@10": 0.5}, "x": {"mrr@10": 0.25}}}}
    rows = benchmark_rows({"test": report}, {"all": 10, "x": 4}, {("a", "all"): (0.4, 0.6)})
    assert [r[:3] for r in rows] == [["test", "a", 10], ["test", "a · x", 4]]
    assert rows[0][-1] == "0.400 to 0.600" and rows[1][-1] == ""


def test_mrr_interval_brackets_the_mean_over_queries():
    rr = [1.0] * 30 + [0.5] * 30 + [0.0] * 40
    low, high = mrr_interval(rr)
    assert low < float(np.mean(rr)) < high and high - low < 0.3
    assert mrr_interval([1.0, 1.0, 1.0]) == (1.0, 1.0) and mrr_interval([0.5]) is None


def test_drilldown_opens_on_a_telling_kind_and_keeps_all_only_when_chosen():
    from ciea.service import SearchService
    from ciea.ui.benchmark_tab import ALL_KINDS, BenchmarkActions

    bench = BenchmarkActions(SearchService())
    kind, query = bench.queries("scenes", "test", None)
    assert kind.value == "complementary" and "comp" in query.value
    # "all" left behind by a set without kinds (stamps' captions) does not stick ...
    assert bench.queries("scenes", "test", ALL_KINDS)[0].value == "complementary"
    assert bench.queries("scenes", "test", "image-only")[0].value == "image-only"
    # ... but the user's own choice of "all" does
    assert bench.choose_kind("scenes", "test", ALL_KINDS)[0].value == ALL_KINDS

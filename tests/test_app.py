"""The app as users and API clients meet it: launched as `python app.py`, called with gradio_client."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ciea.service import ResultRow, SearchResponse
from ciea.ui.results import results_html

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app exited early:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"app did not start in {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def test_search_endpoint_returns_results_side_by_side(client, app_url):
    html, data = client.predict("an elephant", "stamps", ["text-dense", "dual-fused"], 5, api_name="/search")
    assert list(data["results"]) == ["text-dense", "dual-fused"]
    assert all(len(rows) == 5 for rows in data["results"].values())
    assert data["results"]["text-dense"][0]["doc_id"] == "animals/mammals/elephant.png"
    assert html.count('class="ciea-card"') == 10
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


def test_query_markup_is_not_rendered(client):
    html, data = client.predict("<img src=x onerror=alert(1)>", "stamps", ["text-dense"], 3, api_name="/search")
    assert "onerror=alert" not in html.replace("&lt;", "")  # nothing of the query becomes markup
    assert data["query"] == "<img src=x onerror=alert(1)>"


def test_only_assets_are_served(client, app_url):
    for path in ("/gradio_api/file=/etc/passwd", f"/gradio_api/file={ROOT / 'app.py'}"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(app_url.rstrip("/") + path, timeout=10)
        assert info.value.code in (403, 404)


def test_captions_and_ids_are_escaped_in_result_cards(tmp_path):
    evil = '<img src=x onerror=alert(1)>'
    row = ResultRow(1, evil, 0.5, evil, None, "x")
    html = results_html(SearchResponse("q", "c", 1, {"text-dense": [row]}, [evil]), {"text-dense": evil})
    assert "<img src=x" not in html and html.count("&lt;img src=x onerror=alert(1)&gt;") >= 3


def test_scenes_results_render_their_images_on_demand(client, app_url):
    html, data = client.predict("a blue bicycle beside an elephant", "scenes", ["text-dense", "dual-fused"], 3,
                                api_name="/search")
    assert all(len(rows) == 3 for rows in data["results"].values())
    assert all(r["doc_id"].startswith("scene-") for r in data["results"]["dual-fused"])
    thumb = re.search(r'src="(/gradio_api/file=[^"]+)"', html).group(1)
    with urllib.request.urlopen(app_url.rstrip("/") + thumb, timeout=10) as resp:
        assert resp.status == 200 and resp.read(8) == b"\x89PNG\r\n\x1a\n"

"""Space settings and documentation stay consistent with the code."""

from __future__ import annotations

import re
from pathlib import Path

import gradio

ROOT = Path(__file__).resolve().parent.parent


def front_matter() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("---\n")[1]
    return dict(line.split(": ", 1) for line in block.strip().splitlines())


def test_readme_front_matter_matches_space_yaml_and_installed_gradio():
    space = dict(line.split(": ", 1) for line in (ROOT / "Space.yaml").read_text(encoding="utf-8").splitlines()
                 if line and not line.startswith("#"))
    assert front_matter() == space
    assert space["sdk_version"] == gradio.__version__
    assert space["app_file"] == "app.py" and (ROOT / space["app_file"]).is_file()


def test_every_api_name_in_the_app_is_documented():
    names = set(re.findall(r'api_name="([^"]+)"', (ROOT / "app.py").read_text(encoding="utf-8")))
    assert "search" in names
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"`/{name}`" in readme for name in names)


def test_requirements_are_pinned():
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines and all("==" in l for l in lines)

"""Comments explain in place or point to a file that is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = [*ROOT.glob("ciea/**/*.py"), ROOT / "app.py", *ROOT.glob("benchmarks/**/*.py"), *ROOT.glob("tests/**/*.py")]
OUTSIDE = re.compile(r"DESIGN(\.md| section| \d)")


def test_no_comment_cites_a_document_outside_the_repository():
    citing = {str(p.relative_to(ROOT)) for p in CODE if p != Path(__file__) and OUTSIDE.search(p.read_text("utf-8"))}
    assert citing == set()


def test_every_docs_file_a_comment_names_exists():
    named = {m for p in CODE for m in re.findall(r"docs/[\w./-]+\.md", p.read_text("utf-8"))}
    assert named, "the code points to docs/ somewhere"
    assert sorted(n for n in named if not (ROOT / n).is_file()) == []

"""Every function and class the product defines is used by the product (app, CLI, benchmarks),
not only by tests: code kept alive by its own tests is dead weight."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [*ROOT.glob("ciea/**/*.py"), ROOT / "app.py", *ROOT.glob("benchmarks/**/*.py")]


def definitions(path: Path):
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("__"):
            yield node.name


def test_no_product_code_is_used_only_by_tests():
    # every whole word of the product, counted once: a name's count is how often `\bname\b` matches
    words = Counter(re.findall(r"\w+", "\n".join(p.read_text("utf-8") for p in PRODUCT)))
    unused: dict[str, set[str]] = {}
    for path in PRODUCT:
        for name in definitions(path):
            if words[name] <= 1:  # its own definition only
                unused.setdefault(str(path.relative_to(ROOT)), set()).add(name)
    assert unused == {}

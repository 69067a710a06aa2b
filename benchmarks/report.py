"""BENCHMARKS.md from the harness's JSON: header (machine, date, versions, command, load), one
table per section, the before/after comparisons, the soak summary and a closing note that lists
every target with its measured value. Pure functions of the results dict, so they are testable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.stats import meets

SECTIONS = ("query", "app", "scale", "browser")
#: Finished studies whose code is gone live on below this heading; a regenerated file keeps them.
HISTORICAL_HEADING = "## Historical studies (code removed; figures from the commit named)"
#: What the profile showed and what it changed, written by hand; a regenerated file keeps it too.
PREFACE_HEADING = "## What the profile showed, and what changed"
FIGURE_COLUMNS = ["figure", "n", "median", "p95", "IQR", "min", "max", "unit", "note"]
#: (before tag, after tag, what changed) pairs of figure-name variants shown side by side.
#: "before" tags name the settings the project shipped until the profile below changed them.
VARIANT_PAIRS = (
    ("[every core]", "[as shipped]", "one torch/FAISS thread per serving process"),
    ("[every core, 1 core busy]", "[as shipped, 1 core busy]", "one thread per serving process, one core busy"),
    ("(cold), text encoded per retriever", "(cold)", "one text-tower pass shared by the retrievers"),
)
LOAD_LIMIT = 2.5


def fmt(value: Any) -> str:
    """A table cell: numbers to at most 4 significant digits, None as a dash, pipes escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        magnitude = abs(value)
        if math.isnan(value) or magnitude >= 1000:
            return "-" if math.isnan(value) else f"{value:,.0f}"
        return f"{value:.3g}" if magnitude < 1 else f"{value:.{2 - int(math.log10(magnitude))}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(columns: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def figure_rows(figures: list[dict[str, Any]]) -> list[list[Any]]:
    return [[f["name"], f.get("n"), f.get("median"), f.get("p95"), f.get("iqr"), f.get("min"), f.get("max"),
             f["unit"], f.get("note", "")] for f in figures]


@dataclass(frozen=True)
class Comparison:
    """One figure before and after a change (same measurement, one variant apart)."""

    change: str
    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def speedup(self) -> float | None:
        b, a = self.before.get("median"), self.after.get("median")
        return b / a if b and a else None


def comparisons(figures: list[dict[str, Any]], pairs=VARIANT_PAIRS) -> list[Comparison]:
    """Figures whose names differ only by a (before, after) tag pair, matched up."""
    by_name = {f["name"]: f for f in figures}
    out = []
    for before_tag, after_tag, change in pairs:
        for name, fig in by_name.items():
            if before_tag in name and not name.endswith(after_tag):
                twin = by_name.get(name.replace(before_tag, after_tag))
                if twin is not None and twin is not fig and "median" in fig and "median" in twin:
                    out.append(Comparison(change, fig, twin))
    return out


def thread_comparisons(figures: list[dict[str, Any]], thread_counts: list[int]) -> list[Comparison]:
    """Query-path figures at the other thread count (before) against the shipped one (after)."""
    if len(thread_counts) < 2:
        return []
    shipped, other = thread_counts[0], thread_counts[1]
    tag = lambda n: f"[{n} thread{'s' if n > 1 else ''}]"  # noqa: E731 - as bench_query names them
    return comparisons(figures, ((tag(other), tag(shipped),
                                  f"torch/FAISS threads {other} -> {shipped} (in process)"),))


def all_figures(results: dict[str, Any]) -> list[dict[str, Any]]:
    sections = results.get("sections", {})
    out = []
    for name in SECTIONS:
        section = sections.get(name) or {}
        out += section.get("figures", [])
    return out


def worst(figs: list[dict[str, Any]]) -> str:
    """The worst of figures that share a target: highest p50 (and p95 where it is bounded), lowest
    value of each named minimum (e.g. recall10)."""
    measured = [f for f in figs if "median" in f]
    if not measured:
        return "not measured"
    unit, goal = measured[0]["unit"], measured[0]["extra"]["target"]
    out = f"p50 {fmt(max(f['median'] for f in measured))} {unit}"
    if "p95_max" in goal:
        out += f", p95 {fmt(max(f['p95'] for f in measured))} {unit}"
    for key in goal.get("minimums", {}):
        out += f", {key} {fmt(min(f['extra'].get(key, 0) for f in measured))}"
    return out


def targeted(results: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Figures that carry a target, grouped by (target label, setting), in run order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for fig in all_figures(results):
        goal = (fig.get("extra") or {}).get("target")
        if goal:
            groups.setdefault((goal["label"], setting_of(fig["name"])), []).append(fig)
    return groups


def verdict(figs: list[dict[str, Any]]) -> str:
    found = [meets(f) for f in figs]
    return "-" if None in found else "met" if all(found) else "MISSED"


def header(meta: dict[str, Any]) -> str:
    machine = meta.get("machine", {})
    versions = meta.get("versions", {})
    load_start, load_end = meta.get("loadavg_start"), meta.get("loadavg_end")
    lines = [
        "# Benchmarks",
        "",
        (f"Generated by `{meta.get('command', 'python -m benchmarks.run')}` on {meta.get('date', '?')} "
        f"({meta.get('mode', '?')} mode, {fmt(meta.get('wall_s'))} s wall). Regenerate it with the same command; "
        "`python -m benchmarks.run --quick` prints the same figures in under 5 minutes without writing this file."),
        "",
    ]
    warning = load_warning(meta)
    if warning:
        lines += [f"> **{warning}**", ""]
    lines += [
        table(["", ""], [
            ["machine", (f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
                        f"{fmt(machine.get('memory_gb'))} GB memory; {machine.get('platform', '')}")],
            ["GPU", machine.get("gpu") or "none"],
            ["versions", ", ".join(f"{k} {v}" for k, v in versions.items())],
            ["code", meta.get("git", "?")],
            ["environment", ", ".join(f"{k}={v}" for k, v in (meta.get("environment") or {}).items()) or "defaults"],
            ["load average (1 min) at start / end", f"{fmt(load_start)} / {fmt(load_end)}"],
            ["sections", ", ".join(meta.get("sections", []))],
        ]),
        "",
        ("Every figure is measured after warm-up over repeated runs: **n** runs, their **median**, nearest-rank "
        "**p95**, the interquartile range (**IQR**, the spread) and the extremes. n = 1 marks a measurement too "
        "expensive to repeat in this mode. Targets and their verdicts close the file."),
    ]
    return "\n".join(lines)


def load_warning(meta: dict[str, Any]) -> str | None:
    """The prominent warning when the machine was busy (load average above the limit)."""
    start, end = meta.get("loadavg_start"), meta.get("loadavg_end")
    busy = [v for v in (start, end) if v is not None and v > LOAD_LIMIT]
    if not busy:
        return None
    waited = meta.get("waited_for_load_s")
    how = f" after waiting {fmt(waited)} s for it to drop" if waited else ""
    return (f"The machine was busy during this run (1-minute load average {fmt(start)} at start, {fmt(end)} at end, "
            f"on {meta.get('machine', {}).get('cores', '?')} cores{how}): other jobs shared the CPU, so latencies "
            "are pessimistic and noisier than on an idle machine.")


def section_markdown(key: str, section: dict[str, Any]) -> str:
    parts = [f"## {section.get('title', key)}", ""]
    if section.get("seconds") is not None:
        load = section.get("loadavg") or [None, None]
        parts += [(f"*{fmt(section['seconds'])} s; 1-minute load average {fmt(load[0])} at its start, "
                   f"{fmt(load[1])} at its end.*"), ""]
    if section.get("error"):
        parts += [f"**This section failed:** `{section['error']}`", ""]
    for note in section.get("notes", []):
        parts.append(f"- {note}")
    if section.get("notes"):
        parts.append("")
    if key in ("query", "app") and section.get("retrievers"):
        ready = "; ".join(f"{c}: {', '.join(names) or 'none'}" for c, names in section["retrievers"].items())
        parts += [f"Retrievers measured (ready at run time): {ready}.", ""]
    unavailable = {c: u for c, u in (section.get("unavailable") or {}).items() if u}
    if unavailable:
        parts += ["Unavailable at run time (not measured): " + "; ".join(
            f"{c}: {', '.join(sorted(u))}" for c, u in unavailable.items()) + ".", ""]
    if section.get("figures"):
        parts += [table(FIGURE_COLUMNS, figure_rows(section["figures"])), ""]
    if section.get("table"):
        parts += [table(section["columns"], section["table"]), ""]
    if key == "app" and section.get("soak"):
        parts += soak_markdown(section["soak"])
    return "\n".join(parts)


def soak_markdown(soak: dict[str, Any]) -> list[str]:
    keys = ["clients", "requests", "wall_s", "errors", "p50_s", "p95_s", "max_s", "throughput_rps", "rss_warm_mb",
            "rss_end_mb", "growth_pct", "server_answers_after", "ok"]
    kinds = soak.get("latency_by_kind") or {}
    return ["### Soak (benchmarks.soak.run_soak against the same process)", "",
            table(["measure", "value"], [[k, soak.get(k)] for k in keys if k in soak]), "",
            "Soak targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in soak.get("targets", {}).items()),
            "", *(["Latency by kind of request (after warm-up):", "",
                   table(["kind", "n", "p50 s", "p95 s", "max s"],
                         [[k, v.get("n"), v.get("p50_s"), v.get("p95_s"), v.get("max_s")] for k, v in kinds.items()]),
                   ""] if kinds else [])]


#: Figures worth a before/after row (the rest of a variant's figures are in its own section).
KEY_FIGURES = ("encode + search (cold)", "search handler (cold)", "core busy", "cold (distinct queries)",
               "cold, plain HTTP", "first /search answer", "peak RSS", "peer: open_clip")


def key_comparisons(results: dict[str, Any]) -> list[Comparison]:
    """Before/after pairs of the figures that matter, thread experiment first."""
    figures = all_figures(results)
    counts = (results.get("sections", {}).get("query") or {}).get("thread_counts", [])
    found = thread_comparisons(figures, counts) + comparisons(figures)
    return [c for c in found if any(key in c.before["name"] for key in KEY_FIGURES)]


def comparison_markdown(results: dict[str, Any]) -> str:
    found = key_comparisons(results)
    lines = ["## Before / after", ""]
    if not found:
        return "\n".join(lines + ["No variant pairs were measured in this run.", ""])
    lines += ["Each row is one figure measured twice, one setting apart; > 1 means the change is faster.", ""]
    lines += [table(["change", "figure (before)", "before p50", "after p50", "before p95", "after p95",
                     "x faster (p50)"],
                    [[c.change, c.before["name"], c.before["median"], c.after["median"], c.before["p95"],
                      c.after["p95"], c.speedup] for c in found]), ""]
    return "\n".join(lines)


def setting_of(name: str) -> str:
    """The setting a figure was measured under: its last [bracketed] tag, else "-"."""
    tags = re.findall(r"\[([^\]]+)\]", name)
    return tags[-1] if tags else "-"


#: Before/after pairs repeated as sentences in the closing note.
CONCLUSION_FIGURES = ("search handler (cold)", "SearchService.search, all retrievers", "cold (distinct queries)",
                      "first /search answer")


def conclusions(results: dict[str, Any]) -> list[str]:
    """Plain sentences drawn from the measured figures (never written by hand, so never stale)."""
    out = []
    for c in key_comparisons(results):
        if c.speedup and any(key in c.before["name"] for key in CONCLUSION_FIGURES) \
                and not (c.change.startswith("torch/FAISS threads") and "per retriever" in c.before["name"]):
            out.append(f"{c.change}: {c.before['name']}: p50 {fmt(c.before['median'])} -> "
                       f"{fmt(c.after['median'])} {c.before['unit']}, p95 {fmt(c.before['p95'])} -> "
                       f"{fmt(c.after['p95'])} {c.before['unit']}.")
    return out


def closing_note(results: dict[str, Any]) -> str:
    lines = ["## Closing note: targets", ""]
    groups = targeted(results)
    if not groups:
        return "\n".join(lines + ["No targeted figure was measured in this run.", ""])
    order = {key: i for i, key in enumerate(groups)}  # settings in run order: as shipped first
    lines += [("Each target under each setting it was measured in, with the worst of its figures (all corpora "
               "and retrievers); the per-figure list follows."), ""]
    lines += [table(["target", "setting", "figures", "worst measured", "verdict"],
                    [[label, setting, len(figs), worst(figs), verdict(figs)] for (label, setting), figs
                     in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0]]))]), ""]
    found = conclusions(results)
    if found:
        lines += ["Defaults and the changes that matter, from the figures above:", ""]
        lines += [f"- {note}" for note in found] + [""]
    rows = sorted(((label, f) for (label, _), figs in groups.items() for f in figs), key=lambda r: r[0])
    lines += ["<details><summary>Every targeted figure</summary>", "",
              table(["target", "figure", "measured", "verdict"],
                    [[label, f["name"], worst([f]), verdict([f])] for label, f in rows]), "", "</details>"]
    return "\n".join(lines + [""])


def _kept(path: Path, heading: str, to_end: bool) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    at = text.find(heading)
    end = len(text) if to_end else text.find("\n## ", at + 1) + 1
    return text[at:end] if at >= 0 and end > at else ""


def historical(path: Path) -> str:
    """The historical studies of an existing BENCHMARKS.md (from ``HISTORICAL_HEADING`` on), or ""."""
    return _kept(path, HISTORICAL_HEADING, to_end=True)


def preface(path: Path) -> str:
    """The hand-written summary of what the profile showed (``PREFACE_HEADING`` to the next section), or ""."""
    return _kept(path, PREFACE_HEADING, to_end=False)


def render(results: dict[str, Any], history: str = "", profile: str = "") -> str:
    """The whole BENCHMARKS.md; ``profile`` (see ``preface``) follows the header and ``history``
    (see ``historical``) ends it: prose written by hand, kept when the file is regenerated."""
    parts = [header(results.get("meta", {})), "", profile]
    sections = results.get("sections", {})
    for key in SECTIONS:
        if key in sections:
            parts += [section_markdown(key, sections[key]), ""]
    parts += [comparison_markdown(results), closing_note(results), history]
    return "\n".join(parts).rstrip() + "\n"

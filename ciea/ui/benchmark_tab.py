"""The Benchmark tab: the saved evaluation (``python -m ciea eval``) as a table and a chart,
and a per-query drill-down showing each retriever's top results with the relevant ones marked.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import plotly.graph_objects as go

from ciea.config import DEFAULT_K, MAX_K
from ciea.evaluate import METRICS
from ciea.service import SearchService
from ciea.ui.benchmark import HEADERS, benchmark_rows, mrr_interval
from ciea.ui.common import guarded, towers_of
from ciea.ui.plots import benchmark_figure, notice_figure
from ciea.ui.results import CARD_CLICK_JS, message_html, results_html

ALL_KINDS = "all"
DEFAULT_METRIC = "mrr@10"
#: The drill-down opens on the first query of the first of these kinds the set has: queries
#: where retrievers differ (on caption queries every retriever gets everything right).
DRILLDOWN_KINDS = ("complementary", "attribute", "image-only")


@dataclass
class BenchmarkTab:
    split: gr.Dropdown
    metric: gr.Dropdown
    table: gr.Dataframe
    chart: gr.Plot
    intervals: gr.Button
    kind: gr.Dropdown
    query: gr.Dropdown
    k: gr.Slider
    results: gr.HTML
    raw: gr.JSON


def build_benchmark_tab(splits: list[str]) -> BenchmarkTab:
    """The Benchmark tab's components (call inside ``gr.Tab``); filled when the tab opens."""
    gr.Markdown("MRR@10, nDCG@10 and Recall@k per retriever and query kind, measured offline with "
                "`python -m ciea eval`. On **scenes**, *complementary* and *image-only* queries name objects "
                "that only the image shows; *caption* queries are answerable from the caption alone; *binding*, "
                "*spatial*, *count* and *unseen* ask which object wears a colour, where it stands, how many there "
                "are, and about objects never seen beside others in training. On **emoji**, *attribute* queries "
                "name what only the drawing shows; *name* queries are the emoji's own name.")
    with gr.Row():
        # Choices differ per corpus; the actions check values, so API calls may name any split.
        split = gr.Dropdown(splits, value=splits[0] if splits else None, label="Query set (split)", scale=1,
                            allow_custom_value=True)
        metric = gr.Dropdown(list(METRICS), value=DEFAULT_METRIC, label="Metric in the chart", scale=1)
    table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, max_height=2000, label="Evaluation",
                         elem_id="ciea-bench-table",
                         column_widths=["8%", "22%", "7%"] + ["9%"] * (len(HEADERS) - 4) + ["18%"])
    with gr.Row(equal_height=True):
        gr.Markdown("*queries*: judged queries of that kind. The 95% interval of MRR@10 comes from resampling the "
                    "queries (bootstrap, BCa): it runs every query through every retriever once, about 10 s per "
                    "retriever on two idle cores, longer on a busy machine.")
        intervals = gr.Button("Compute 95% intervals", size="sm", scale=0, min_width=200)
    chart = gr.Plot(label="Chart")
    gr.Markdown("### Drill down: one query, every retriever")
    with gr.Row():
        # No choices until a query set is read: a lone "all" would be auto-selected and stick,
        # and the drill-down would open on a caption query that every retriever gets right.
        kind = gr.Dropdown([], value=None, label="Query kind", scale=1, elem_id="ciea-drill-kind")
        query = gr.Dropdown([], label="Query (type to filter)", scale=4, filterable=True, allow_custom_value=True)
        k = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="k", scale=1)
    results = gr.HTML(js_on_load=CARD_CLICK_JS, elem_id="ciea-drilldown", min_height=80, label="Drill-down results")
    with gr.Accordion("Raw drill-down results (JSON)", open=False):
        raw = gr.JSON(label="Drill-down JSON")
    return BenchmarkTab(split, metric, table, chart, intervals, kind, query, k, results, raw)


class BenchmarkActions:
    def __init__(self, service: SearchService) -> None:
        self.service = service

    def splits(self, corpus: str) -> list[str]:
        """Query sets with a saved evaluation first, then the other judged ones."""
        evaluated = list(self.service.benchmarks(corpus))
        return evaluated + [s for s in self.service.query_splits(corpus) if s not in evaluated]

    def open(self, corpus: str, split: str | None) -> gr.Dropdown:
        """The query sets of ``corpus`` when the tab opens (keeping ``split`` if it has it)."""
        def run():
            splits = self.splits(corpus)
            return gr.Dropdown(choices=splits, value=split if split in splits else (splits[0] if splits else None))

        return guarded(run, lambda msg: gr.Dropdown(), "benchmark open")

    def on_switch(self, open_now: bool, corpus: str, split: str | None, metric: str) -> tuple:
        """After a corpus switch: (split, table, chart, kind, query) for the new corpus when
        the tab is open, else cleared (the tab refreshes when opened)."""
        if not open_now:
            blank = notice_figure("Open the Benchmark tab to load this corpus.", height=120)
            # no kind chosen: the tab opens on a telling kind again
            return gr.skip(), [], blank, gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None)
        chosen = self.open(corpus, split)
        value = chosen.value if isinstance(chosen, gr.Dropdown) else split
        return (chosen, *self.table(corpus, value, metric), *self.queries(corpus, value, ""))

    def kind_counts(self, corpus: str, split: str) -> dict[str, int]:
        """Judged queries per kind of one query set, and in all."""
        queries, qrels = self.service.query_set(corpus, split)
        judged = [q for q in queries if q.qid in qrels]
        counts: dict[str, int] = {ALL_KINDS: len(judged)}
        for q in judged:
            if q.kind:
                counts[q.kind] = counts.get(q.kind, 0) + 1
        return counts

    def table(self, corpus: str, split: str, metric: str) -> tuple[list[list], go.Figure]:
        """(table rows, chart) of the saved evaluation of one query set."""
        return guarded(lambda: self._table(corpus, split, metric, None), self._failed_table, "benchmark table")

    def table_with_intervals(self, corpus: str, split: str, metric: str) -> tuple[list[list], go.Figure]:
        """The table with a 95% bootstrap interval over queries on every MRR@10."""
        def run():
            queries, qrels = self.service.query_set(corpus, split)
            kinds = {q.qid: q.kind for q in queries if q.qid in qrels}
            report = self.service.benchmarks(corpus).get(split) or {}
            intervals = {}
            for name in report.get("metrics", {}):
                if name not in self.service.retrievers(corpus):
                    continue
                rr = self.service.reciprocal_ranks(corpus, split, name, 10)
                for kind in report["metrics"][name]:
                    values = [v for qid, v in rr.items() if kind == ALL_KINDS or kinds.get(qid) == kind]
                    intervals[(name, kind)] = mrr_interval(values)
            return self._table(corpus, split, metric, intervals)

        return guarded(run, self._failed_table, "benchmark intervals")

    @staticmethod
    def _failed_table(msg: str):
        return [], notice_figure(msg)

    def _table(self, corpus: str, split: str, metric: str, intervals):
        report = self.service.benchmarks(corpus).get(split)
        if report is None:
            msg = f"No saved evaluation for {split!r} on {corpus}: run python -m ciea eval --corpus {corpus} --split {split}"
            return [], notice_figure(msg)
        counts = self.kind_counts(corpus, split)
        return (benchmark_rows({split: report}, counts, intervals),
                benchmark_figure(report, metric or DEFAULT_METRIC, intervals))

    def queries(self, corpus: str, split: str, kind: str, keep_all: bool = False) -> tuple[gr.Dropdown, gr.Dropdown]:
        """Kind choices and the (filtered) query choices of one query set. A kind the set has is
        kept, except "all" unless the user just chose it (``keep_all``): a set without kinds (stamps'
        captions, or the old split during a corpus switch) leaves "all" behind, and the drill-down
        should still open on a kind only the image can answer."""
        def failed(msg: str):
            # no kind chosen (a stale split during a corpus switch lands here): the next call
            # with the right split opens on a telling kind instead of keeping "all"
            return gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None, info=msg)

        def run():
            queries, qrels = self.service.query_set(corpus, split)
            judged = [q for q in queries if q.qid in qrels]
            kinds = [ALL_KINDS] + sorted({q.kind for q in judged if q.kind})
            telling = next((k for k in DRILLDOWN_KINDS if k in kinds), ALL_KINDS)
            chosen = kind if kind in kinds and (keep_all or kind != ALL_KINDS) else telling
            shown = [q for q in judged if chosen == ALL_KINDS or q.kind == chosen]
            choices = [(" · ".join(filter(None, (q.text, q.kind, q.qid))), q.qid) for q in shown]
            return (gr.Dropdown(choices=kinds, value=chosen),
                    gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, info=None))

        return guarded(run, failed, "benchmark queries")

    def choose_kind(self, corpus: str, split: str, kind: str) -> tuple[gr.Dropdown, gr.Dropdown]:
        """The user picked ``kind`` (``all`` included): its queries."""
        return self.queries(corpus, split, kind, keep_all=True)

    def drilldown(self, corpus: str, split: str, qid: str, k: float) -> tuple[str, dict]:
        """Each retriever's top-k for one judged query, relevant documents marked: (table, JSON)."""
        def failed(msg: str):
            return message_html(msg), {"error": msg}

        def run():
            if not qid:
                return failed("Pick a query.")
            _, response = self.service.search_judged(corpus, split, qid, None, int(k))
            towers = towers_of(self.service, corpus, list(response.results))
            return results_html(response, towers), response.to_json() | {"qid": qid, "split": split}

        return guarded(run, failed, "drill-down")

"""CIEA Explorer: the Gradio app (layout and event wiring only; logic lives in ciea/)."""

from __future__ import annotations

import logging

import gradio as gr

from ciea.config import DEFAULT_K, MAX_K, Settings
from ciea.retrievers import REGISTRY
from ciea.service import SearchService
from ciea.ui.benchmark import HEADERS, benchmark_rows
from ciea.ui.results import CSS, message_html, results_html
from ciea.validation import InputError

log = logging.getLogger("ciea.app")
DEFAULT_CORPUS = "stamps"
EXAMPLES = [
    ["an elephant", DEFAULT_CORPUS],
    ["a red fire truck", DEFAULT_CORPUS],
    ["something to eat for breakfast", DEFAULT_CORPUS],
    ["a musical instrument with strings", DEFAULT_CORPUS],
    ["a blue bicycle beside an elephant", "scenes"],
]
ABOUT = """
**CIEA Explorer** compares retrievers over image+text documents side by side.
Captions say only part of what an image shows; CIEA (Complementary Information Extraction
and Alignment) keeps the part the caption misses. This first version serves the caption-only
baseline and training-free dual encoders; CIEA itself and the trained baselines come next.

Towers on this host (backbone `{backbone}`): {towers}.
The bundled dual encoder is *not* CLIP: its image tower is an ImageNet classifier mapped into
the text space with ConSE. Set `CIEA_BACKBONE=open_clip:ViT-B-32:laion2b_s34b_b79k` and rebuild
the indexes to compare real CLIP towers. Stamps: Tux Paint stamp collection, GPL-2 (see assets/stamps).
"""


def build_demo(service: SearchService) -> gr.Blocks:
    corpora = service.corpora()
    default_corpus = DEFAULT_CORPUS if DEFAULT_CORPUS in corpora else (corpora[0] if corpora else None)
    ready = service.retrievers(default_corpus) if default_corpus else []
    towers = {name: st.retriever.towers() for name, st in service.states(default_corpus).items()
              if st.ready} if default_corpus else {}
    backbone = service.backbone

    def search(query: str, corpus: str, retrievers: list[str], k: float):
        try:
            response = service.search(query, corpus, retrievers or [], int(k))
        except InputError as exc:
            return message_html(str(exc)), {"error": str(exc)}
        except Exception:  # never a stack trace in the UI
            log.exception("search failed")
            msg = "Something went wrong while searching; the error was logged. Try another query."
            return message_html(msg), {"error": msg}
        tower_labels = {n: service.retriever(corpus, n).retriever.towers() for n in response.results}
        return results_html(response, tower_labels), response.to_json()

    def retriever_choices(corpus_name: str) -> list[tuple[str, str]]:
        return [(f"{REGISTRY[n].title} ({n})", n) for n in service.retrievers(corpus_name)]

    def on_corpus_change(corpus_name: str):
        choices = retriever_choices(corpus_name)
        return (gr.update(choices=choices, value=[v for _, v in choices]),
                benchmark_rows(service.benchmarks(corpus_name)))

    with gr.Blocks(title="CIEA Explorer") as demo:
        gr.Markdown("# CIEA Explorer\nSearch image+text documents and compare retrievers side by side.")
        unavailable = service.unavailable(default_corpus) if default_corpus else {}
        if unavailable:
            gr.Markdown("\n".join(f"- **{n}** unavailable: `{why}`" for n, why in unavailable.items()))
        with gr.Row():
            query = gr.Textbox(value=EXAMPLES[0][0], label="Query", placeholder="e.g. an elephant", scale=4,
                               max_length=2000, autofocus=True)
            button = gr.Button("Search", variant="primary", scale=1)
        with gr.Row():
            corpus = gr.Dropdown(corpora, value=default_corpus, label="Corpus", scale=1)
            retrievers = gr.CheckboxGroup(retriever_choices(default_corpus) if default_corpus else [],
                                          value=ready, label="Retrievers", scale=3)
            k = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="Results per retriever (k)", scale=2)
        results = gr.HTML(label="Results")
        with gr.Accordion("Raw results (JSON, as the /search API returns them)", open=False):
            raw = gr.JSON()
        gr.Examples(EXAMPLES, inputs=[query, corpus])
        with gr.Accordion("Benchmark (python -m ciea eval)", open=False):
            gr.Markdown("MRR@10, nDCG@10 and Recall@k per retriever and query kind, measured offline; "
                        "`scenes` queries name objects that only the image shows.")
            table = gr.Dataframe(headers=HEADERS, value=benchmark_rows(service.benchmarks(default_corpus))
                                 if default_corpus else [], interactive=False, wrap=True)
        with gr.Accordion("About", open=False):
            gr.Markdown(ABOUT.format(backbone=backbone.spec,
                                     towers="; ".join(f"**{n}**: {t}" for n, t in towers.items())))

        inputs = [query, corpus, retrievers, k]
        button.click(search, inputs, [results, raw], api_name="search", concurrency_limit=4)
        query.submit(search, inputs, [results, raw], api_name=False, concurrency_limit=4)
        demo.load(search, inputs, [results, raw], api_name=False)  # results on first sight
        corpus.change(on_corpus_change, corpus, [retrievers, table], api_name=False)
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    service = SearchService(settings)
    gr.set_static_paths([settings.assets_dir])
    demo = build_demo(service)
    demo.queue(max_size=64, default_concurrency_limit=4)
    demo.launch(css=CSS, allowed_paths=[str(settings.assets_dir)])


if __name__ == "__main__":
    main()

"""Build throughput: documents per second through each backbone's image and text towers, and the
time to rebuild every shipped index (always into a temporary folder, never over indexes/).

Quick mode rebuilds a 96-document subset of stamps with every retriever that can be built and
extrapolates per document to all shipped corpora (labelled as an estimate); full mode rebuilds
every corpus. Where a CUDA GPU is present, the towers' throughput and a short training run are
measured on it too.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.stats import Figure, figure, rate

log = logging.getLogger(__name__)
BACKBONES = ("bundled", "open_clip:ViT-B-32:none")
IMAGE_BATCH = 32  # ciea.features.encode_corpus's batch
TEXT_BATCH = 128  # ciea.features.encode_corpus's caption batch
SUBSET_CORPUS = "stamps"
SUBSET_NAME = "stamps-subset"


@dataclass
class BuildConfig:
    images: int  # images per timed repetition
    texts: int  # captions per timed repetition
    repeats: int
    subset: int | None  # documents of the quick rebuild; None = rebuild every corpus fully
    thread_counts: tuple[int, ...] = ()  # throughput also at these torch thread counts (besides the default)
    gpu_train: bool = True


QUICK = BuildConfig(images=24, texts=128, repeats=2, subset=64)
FULL = BuildConfig(images=128, texts=949, repeats=3, subset=None, thread_counts=(1,))


def _sample_images(n: int) -> list:
    from ciea.config import Settings
    from ciea.data.schema import load_corpus
    from ciea.images import load_image

    corpus = load_corpus(SUBSET_CORPUS, Settings().assets_dir)
    docs = [d for d in corpus if d.image][:n]
    return [load_image(corpus.image_path(d)) for d in docs]


def _captions(n: int) -> list[str]:
    from ciea.config import Settings
    from ciea.data.schema import load_corpus

    corpus = load_corpus(SUBSET_CORPUS, Settings().assets_dir)
    texts = [d.text for d in corpus]
    return (texts * (n // len(texts) + 1))[:n]


def tower_throughput(spec: str, images: list, texts: list[str], repeats: int, device: str = "cpu",
                     tag: str = "") -> list[Figure]:
    """Images and captions per second through ``spec``'s towers (encode_corpus's batch sizes)."""
    from ciea.backbones import load_backbone

    start = time.perf_counter()
    backbone = load_backbone(spec, device=device)
    load_s = time.perf_counter() - start
    backbone.encode_images(images[:4])  # warm-up: first-call allocations, lazy kernels
    backbone.encode_text(texts[:8])
    sync = _synchroniser(device)
    img_rates, txt_rates = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        backbone.encode_images(images, batch_size=IMAGE_BATCH)
        sync()
        img_rates.append(rate(len(images), time.perf_counter() - t0))
        t0 = time.perf_counter()
        for s in range(0, len(texts), TEXT_BATCH):
            backbone.encode_text(texts[s:s + TEXT_BATCH])
        sync()
        txt_rates.append(rate(len(texts), time.perf_counter() - t0))
    where = (device if device == "cpu" else f"GPU ({_gpu_name()})") + (f" [{tag}]" if tag else "")
    return [
        figure(f"{spec}: image tower on {where}", img_rates, "docs/s",
               note=f"{len(images)} images per run, batch {IMAGE_BATCH}, preprocessing included"
                    + (f"; towers loaded in {load_s:.1f} s" if load_s > 0.05 else "")),
        figure(f"{spec}: text tower on {where}", txt_rates, "docs/s",
               note=f"{len(texts)} captions per run, batch {TEXT_BATCH}"),
    ]


def _synchroniser(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def subset_assets(root: Path, n: int) -> Path:
    """An assets folder holding the first ``n`` stamps documents as corpus ``stamps-subset``
    (its thumbnails are a symlink to the shipped ones, nothing is copied)."""
    from ciea.config import Settings
    from ciea.data.schema import Corpus, load_corpus

    source = load_corpus(SUBSET_CORPUS, Settings().assets_dir)
    target = root / "assets" / SUBSET_NAME
    target.mkdir(parents=True, exist_ok=True)
    (target / "thumbs").symlink_to(source.root / "thumbs", target_is_directory=True)
    Corpus(SUBSET_NAME, target, source.documents[:n]).save()
    return root / "assets"


def rebuild(config: BuildConfig) -> tuple[list[Figure], dict[str, Any]]:
    """Time ``build_indexes`` into a temporary folder: every shipped corpus (full) or a subset
    extrapolated per document (quick)."""
    from ciea.build import build_indexes
    from ciea.config import Settings
    from ciea.data.schema import load_corpus

    settings = Settings()
    corpora = {name: len(load_corpus(name, settings.assets_dir)) for name in _shipped(settings)}
    total_docs = sum(corpora.values())
    detail: dict[str, Any] = {"corpora": corpora}
    with tempfile.TemporaryDirectory(prefix="ciea-bench-build-") as tmp:
        tmp_path = Path(tmp)
        if config.subset:
            assets = subset_assets(tmp_path, config.subset)
            local = dataclasses.replace(settings, assets_dir=assets, indexes_dir=tmp_path / "indexes",
                                        cache_dir=tmp_path / "cache")
            start = time.perf_counter()
            reports = build_indexes(SUBSET_NAME, local, progress=False)
            seconds = time.perf_counter() - start
            per_doc = seconds / config.subset
            detail.update(subset_docs=config.subset, subset_s=round(seconds, 2),
                          retrievers=[r.retriever for r in reports])
            return [
                figure(f"rebuild {config.subset} stamps documents, {len(reports)} retrievers", [seconds], "s",
                       note="measured from images (empty feature cache): " + ", ".join(r.retriever for r in reports)),
                figure(f"rebuild every shipped index ({total_docs} documents), ESTIMATE", [per_doc * total_docs],
                       "s", note=f"extrapolated linearly from the {config.subset}-document subset; "
                                 "the full run measures it"),
            ], detail
        local = dataclasses.replace(settings, indexes_dir=tmp_path / "indexes", cache_dir=tmp_path / "cache")
        per_corpus, built, cached = {}, {}, {}
        for name in corpora:
            t0 = time.perf_counter()
            reports = build_indexes(name, local, progress=False)
            per_corpus[name] = time.perf_counter() - t0
            built[name] = [r.retriever for r in reports]
        for name in corpora:  # again: the frozen features now come from the (temporary) cache
            t0 = time.perf_counter()
            build_indexes(name, local, progress=False)
            cached[name] = time.perf_counter() - t0
    detail.update(per_corpus_s={k: round(v, 1) for k, v in per_corpus.items()}, retrievers=built,
                  cached_features_s={k: round(v, 1) for k, v in cached.items()})
    figures = [figure(f"rebuild {name} ({corpora[name]} documents, {len(built[name])} retrievers)", [s], "s",
                      note="from images: " + ", ".join(built[name])) for name, s in per_corpus.items()]
    figures.append(figure(f"rebuild every shipped index ({total_docs} documents)", [sum(per_corpus.values())], "s",
                          note="measured, one run, from images (empty feature cache), into a temporary folder"))
    figures.append(figure("rebuild every shipped index with cached frozen features", [sum(cached.values())], "s",
                          note="what a rebuild after training costs: heads and FAISS only"))
    return figures, detail


def _shipped(settings) -> list[str]:
    """Corpora that ship indexes (a folder under indexes/ with at least one manifest)."""
    from ciea.index import MANIFEST_FILE

    return [c for c in sorted(p.name for p in settings.indexes_dir.iterdir() if p.is_dir())
            if any(settings.indexes_dir.glob(f"{c}/*/{MANIFEST_FILE}")) and (settings.assets_dir / c).is_dir()]


def gpu_figures(config: BuildConfig, images: list, texts: list[str]) -> tuple[list[Figure], list[str]]:
    """Tower throughput on CUDA and one short training epoch there; empty with a note without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return [], ["No CUDA GPU on this machine: the optional GPU rows were not measured."]
    figures: list[Figure] = []
    notes: list[str] = []
    for spec in BACKBONES:
        try:
            figures += tower_throughput(spec, images * 4, texts, config.repeats, device="cuda")
        except Exception as exc:  # noqa: BLE001 - a GPU row is optional; its failure is reported, not fatal
            notes.append(f"GPU throughput of {spec} failed: {exc}")
    if config.gpu_train:
        figures_train, notes_train = _gpu_training()
        figures += figures_train
        notes += notes_train
    return figures, notes


def _gpu_training() -> tuple[list[Figure], list[str]]:
    from ciea.config import Settings
    from ciea.train import default_config, train_retriever

    figures, notes = [], []
    with tempfile.TemporaryDirectory(prefix="ciea-bench-train-") as tmp:
        settings = dataclasses.replace(Settings(), checkpoints_dir=Path(tmp))
        for name in ("dual-fused", "ciea"):
            try:
                config = dataclasses.replace(default_config(name), device="cuda", epochs=1, patience=1)
                result = train_retriever(name, settings, config, progress=False)
                figures.append(figure(f"train {name}, 1 epoch on GPU ({_gpu_name()})", [result.seconds], "s",
                                      note="default schedule, one epoch; frozen features from the cache"))
            except Exception as exc:  # noqa: BLE001 - reported in the notes
                notes.append(f"GPU training of {name} failed: {exc}")
    return figures, notes


def run(config: BuildConfig) -> dict[str, Any]:
    from ciea.config import configure_threads

    threads = configure_threads()
    images = _sample_images(config.images)
    texts = _captions(config.texts)
    figures: list[Figure] = []
    for n in (threads, *[t for t in config.thread_counts if t != threads]):
        configure_threads(n)
        for spec in BACKBONES:
            figures += tower_throughput(spec, images, texts, config.repeats, tag=f"{n} thread{'s' if n > 1 else ''}")
    configure_threads(threads)
    rebuild_figures, detail = rebuild(config)
    figures += rebuild_figures
    gpu, gpu_notes = gpu_figures(config, images, texts)
    return {
        "title": "Build throughput and index rebuild",
        "threads": threads,
        "rebuild": detail,
        "figures": [f.to_json() for f in figures],
        "gpu_figures": [f.to_json() for f in gpu],
        "notes": [
            (f"CPU rows use {threads} torch threads (builds are batch work and should use every core). Images are "
            "decoded before timing; the towers' preprocessing (resize, normalise) is inside the timing."),
            "open_clip:ViT-B-32:none is the production ViT-B-32 with random weights: identical compute.",
            ("Rebuilds run ciea.build.build_indexes into a temporary folder (never over indexes/); trained "
            "retrievers without a checkpoint are skipped, as `python -m ciea build` does."),
            *gpu_notes,
        ],
    }

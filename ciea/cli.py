"""Command line: ``python -m ciea {retrievers,search,build,build-assets,eval,train,ablate,geometry,space-files,
deploy-space}``.

The output formats of ``retrievers``, ``search``, ``eval`` and ``geometry`` are contracts that
other tools parse (docs/contracts.md). Errors go to stderr as one clear line, exit code != 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from ciea.backbones import SPEC_HELP, BackboneLoadError
from ciea.checkpoints import CheckpointError
from ciea.config import BACKBONE_ENV, DEFAULT_INDEX_FACTORY, Settings, default_backbone_spec
from ciea.data.schema import CorpusError, load_queries
from ciea.index import IndexStoreError
from ciea.validation import InputError

EXIT_USAGE = 2
EXIT_ARTEFACT = 3


def _settings(args: argparse.Namespace) -> Settings:
    return dataclasses.replace(Settings(), backbone=args.backbone)


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def cmd_retrievers(args: argparse.Namespace) -> int:
    from ciea.service import SearchService

    service = SearchService(_settings(args))
    ready = service.retrievers(args.corpus)
    for name, why in service.unavailable(args.corpus).items():
        print(f"warning: {name} unavailable: {why}", file=sys.stderr)
    _print_json(ready)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from ciea.evaluate import hits_to_run
    from ciea.service import SearchService

    queries = load_queries(args.queries)
    service = SearchService(_settings(args))
    state = service.retriever(args.corpus, args.retriever)
    if not state.ready:
        print(f"error: {state.error}", file=sys.stderr)
        return EXIT_ARTEFACT
    hits = service.search_batch([q.text for q in queries], args.corpus, args.retriever, args.k)
    run = hits_to_run([q.qid for q in queries], hits)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(run, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {len(run)} queries x top-{args.k} to {args.out}", file=sys.stderr)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from ciea.build import build_indexes

    settings = _settings(args)
    reports = build_indexes(args.corpus, settings, args.retriever or None, factory=args.factory)
    _print_json([{"corpus": r.corpus, "retriever": r.retriever, "folder": str(r.folder), "count": r.count,
                  "dim": r.dim, "seconds": round(r.seconds, 2)} for r in reports])
    if not args.no_geometry:
        from ciea.build import build_geometry

        build_geometry(args.corpus, settings, [r.retriever for r in reports])
    return 0


def cmd_geometry(args: argparse.Namespace) -> int:
    from ciea.build import build_geometry
    from ciea.geometry import GeometryStoreError, load_report

    settings = _settings(args)
    folder = settings.index_dir(args.corpus, args.retriever)
    if not args.recompute:
        try:
            _print_json(load_report(folder))
            return 0
        except GeometryStoreError as exc:
            print(f"note: {exc}; computing it now", file=sys.stderr)
    built = build_geometry(args.corpus, settings, [args.retriever], with_umap=not args.no_umap)
    _print_json(built[0].report)
    return 0


def cmd_build_assets(args: argparse.Namespace) -> int:
    out_dir = _settings(args).corpus_dir(args.corpus)
    start = time.perf_counter()
    if args.corpus == "stamps":
        from ciea.data.stamps import DEFAULT_SOURCE, build_stamps_corpus, package_version

        source = Path(args.source) if args.source else DEFAULT_SOURCE
        count = len(build_stamps_corpus(source, out_dir, package_version=package_version()))
    elif args.corpus == "webqa":
        from ciea.data.webqa import write_corpus

        if not args.source:
            raise InputError("webqa needs --source: the folder holding all_docs.json, all_imgs.json, imgs.tsv ...")
        report = write_corpus(Path(args.source), out_dir, args.limit, strict=args.strict)
        count = len(report.corpus)
        if report.broken_images:
            print(f"warning: {len(report.broken_images)} images could not be decoded; kept as text",
                  file=sys.stderr)
    elif args.corpus == "scenes":
        from ciea.data.scenes import build_scenes

        stamps_dir = _settings(args).corpus_dir("stamps")
        count = len(build_scenes(stamps_dir, out_dir, seed=args.seed, probes=args.probes).corpus)
    elif args.corpus in ("emoji", "emoji-train"):
        from ciea.data.emoji import build_emoji

        settings = _settings(args)
        built = build_emoji(Path(args.source) if args.source else None, settings.assets_dir, settings.cache_dir,
                            progress=not args.quiet)
        count = len(built.corpus) + len(built.train_corpus)
        out_dir = f"{settings.corpus_dir('emoji')} and {settings.corpus_dir('emoji-train')}"
    else:
        raise InputError("build-assets knows 'stamps', 'scenes', 'emoji' (builds emoji-train too) and 'webqa' "
                         f"(got {args.corpus!r}).")
    print(f"wrote {count} documents to {out_dir} in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ciea.evaluate import Evaluator, QuerySet
    from ciea.service import SearchService

    service = SearchService(_settings(args))
    if args.queries:
        if not args.qrels:
            raise InputError("--queries needs --qrels (TREC 'qid 0 doc_id rel' or JSON {qid: {doc_id: rel}}).")
        query_set = QuerySet.from_files(args.queries, args.qrels)
    else:
        query_set = service.query_set(args.corpus, args.split)
    queries = query_set.queries
    evaluator = Evaluator.from_query_set(query_set, k=args.k)
    results = {}
    for name in args.retriever or service.retrievers(args.corpus):
        results[name] = evaluator(lambda texts, k: service.search_batch(texts, args.corpus, name, k))
    if args.split == "captions" and not args.queries and not args.retriever:
        from ciea.evaluate import image_side_metrics

        for label, metrics in image_side_metrics(service.corpus(args.corpus), service.backbone,
                                                 service.settings, args.k).items():
            results[label] = {"all": metrics}
    report = {"corpus": args.corpus, "split": args.split if not args.queries else str(args.queries),
              "queries": len(queries), "backbone": service.backbone.spec, "metrics": results}
    if not args.queries:
        out = service.settings.indexes_dir / args.corpus / f"eval_{args.split}.json"
        if args.retriever:
            report = _updated_report(out, report)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _print_json(report)
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    """CIEA's complementarity weights on scenes, by patch role (captioned / omitted / background)."""
    from ciea.backbones import load_backbone
    from ciea.data.materialise import ensure_corpus_images
    from ciea.data.scenes import load_layouts
    from ciea.data.schema import load_corpus
    from ciea.features import cached_corpus_features
    from ciea.retrievers import create_retriever
    from ciea.weight_report import weight_separation

    settings = _settings(args)
    corpus = load_corpus(args.corpus, settings.assets_dir)
    layouts = [lay for lay in load_layouts(corpus.root) if lay.split == args.split]
    if not layouts:
        raise InputError(f"Corpus {args.corpus!r} has no scene layouts of split {args.split!r}.")
    backbone = load_backbone(settings.backbone)
    ensure_corpus_images(corpus, progress=False)
    features = cached_corpus_features(corpus, backbone, settings.cache_dir, progress=False)
    retriever = create_retriever("ciea", backbone, settings)
    row = {d.doc_id: i for i, d in enumerate(corpus)}
    rows = np.array([row[lay.scene_id] for lay in layouts])
    captions = [corpus.documents[r].text for r in rows]
    weights = retriever.encode_patches(features.image.patches[rows], captions, features.text[rows])[1]
    _print_json({"corpus": args.corpus, "split": args.split, **weight_separation(layouts, weights)})
    return 0


def _ciea_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` for a CIEA head option; the value is read as JSON when it parses (3, false)."""
    from ciea.retrievers.ciea import CIEAConfig

    key, sep, value = text.partition("=")
    known = {f.name for f in dataclasses.fields(CIEAConfig)} - {"patch_dim", "token_dim", "num_patches", "text_dim",
                                                                "format", "word_norm"}
    if not sep or key not in known:
        raise InputError(f"--ciea takes KEY=VALUE with KEY one of {', '.join(sorted(known))} (got {text!r}).")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _updated_report(path: Path, report: dict) -> dict:
    """``report``'s retrievers written over their entries in the saved report at ``path``, the
    other retrievers kept in place; the saved report is replaced when it measured something else
    (another backbone, corpus, split or query count) or cannot be read."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return report
    except (OSError, ValueError) as exc:
        print(f"warning: replacing unreadable {path.name} ({exc})", file=sys.stderr)
        return report
    same = ("corpus", "split", "queries", "backbone")
    if not isinstance(saved, dict) or not isinstance(saved.get("metrics"), dict) or \
            any(saved.get(key) != report[key] for key in same):
        print(f"warning: {path.name} measured another setting ({', '.join(same)}); replacing it",
              file=sys.stderr)
        return report
    return {**report, "metrics": {**saved["metrics"], **report["metrics"]}}


def cmd_train(args: argparse.Namespace) -> int:
    from ciea.backbones import load_backbone
    from ciea.retrievers import TRAINABLE
    from ciea.train import default_config, load_training_data, train_retriever

    names = args.retriever or list(TRAINABLE)
    unknown = [n for n in names if n not in TRAINABLE]
    if unknown:
        raise InputError(f"Nothing to train for {', '.join(unknown)}; trainable: {', '.join(TRAINABLE)}.")
    overrides = {key: getattr(args, key) for key in ("epochs", "batch_size", "lr", "lam", "patience",
                                                      "pairs_per_epoch", "seed", "device", "max_minutes", "group_size",
                                                      "align_weight", "hard_negative_epochs", "hard_negative_pool")
                 if getattr(args, key) is not None}
    if args.no_weights:
        overrides["use_weights"] = False
    if args.ciea:
        overrides["ciea"] = dict(_ciea_option(o) for o in args.ciea)
    if args.resume:
        overrides["resume"] = True
    settings = _settings(args)
    data = load_training_data(load_backbone(settings.backbone), settings, args.corpus)
    summary = []
    for name in names:
        config = default_config(name, **overrides)
        result = train_retriever(name, settings, config, data=data, corpora=args.corpus)
        summary.append({"retriever": name, "checkpoint": str(result.checkpoint.path), "sha256": result.checkpoint.sha256,
                        "best_epoch": result.best_epoch, "dev_mrr@10": result.dev_mrr10,
                        "seconds": round(result.seconds, 1), "history": result.history})
    _print_json(summary)
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from ciea.ablation import VARIANTS, run_ablations, summary_table

    settings = _settings(args)
    results = run_ablations(args.variants or list(VARIANTS), args.seeds, args.max_minutes,
                            args.out or settings.cache_dir / "ablations", settings, args.epochs)
    print(summary_table(results, "dev") + "\n\n" + summary_table(results, "test"))
    return 0


def cmd_space_files(args: argparse.Namespace) -> int:
    from ciea.space import space_files

    for path in space_files(settings=_settings(args)):
        print(path)
    return 0


def cmd_deploy_space(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from ciea.space import deploy

    try:
        deploy(args.space, settings=_settings(args), private=args.private or None)
    except HfHubHTTPError as exc:
        print(f"error: the Hub refused the upload: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ciea", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backbone", default=default_backbone_spec(),
                        help=f"{SPEC_HELP} (default: ${BACKBONE_ENV} or 'bundled')")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("retrievers", parents=[common], help="print the JSON list of searchable retrievers")
    p.add_argument("--corpus", required=True)
    p.set_defaults(func=cmd_retrievers)

    p = sub.add_parser("search", parents=[common], help="run queries, write a {qid: {doc_id: score}} run")
    p.add_argument("--corpus", required=True)
    p.add_argument("--retriever", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--queries", required=True, type=Path, help='JSON lines {"qid": str, "text": str}')
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("build", parents=[common], help="encode a corpus and write its FAISS indexes")
    p.add_argument("--corpus", required=True)
    p.add_argument("--retriever", action="append", help="only this retriever (repeatable)")
    p.add_argument("--factory", default=DEFAULT_INDEX_FACTORY,
                   help="FAISS index_factory string, e.g. Flat, HNSW32, IVF1024,PQ32 (default: Flat)")
    p.add_argument("--no-geometry", action="store_true", help="skip the geometry reports and UMAP projections")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("geometry", parents=[common], help="print a retriever's geometry report (JSON); "
                       "computes and saves it next to the index when missing")
    p.add_argument("--corpus", required=True)
    p.add_argument("--retriever", required=True)
    p.add_argument("--recompute", action="store_true", help="recompute even if a saved report exists")
    p.add_argument("--no-umap", action="store_true", help="with --recompute: skip the UMAP projection")
    p.set_defaults(func=cmd_geometry)

    p = sub.add_parser("weights", parents=[common], help="CIEA's complementarity weights by patch role on scene "
                       "layouts (captioned object / omitted objects / background), as JSON")
    p.add_argument("--corpus", default="scenes")
    p.add_argument("--split", default="test")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("build-assets", parents=[common], help="rebuild assets/<corpus> from source data")
    p.add_argument("--corpus", required=True)
    p.add_argument("--source", help="source directory (stamps: /usr/share/tuxpaint/stamps; webqa: the "
                   "UniVL-DR/MARVEL data/WebQA folder; emoji: a node_modules folder holding the pinned npm "
                   "packages, which are otherwise installed with npm into the cache folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--limit", type=int, help="webqa: at most N documents of each kind (test positives first)")
    p.add_argument("--strict", action="store_true", help="webqa: stop at the first undecodable image")
    p.add_argument("--seed", type=int, default=0, help="scenes: generator seed (default 0, the shipped set)")
    p.add_argument("--probes", action=argparse.BooleanOptionalAction, default=True,
                   help="scenes: also the probe scenes and queries (binding, spatial, count, unseen), as shipped "
                        "(--no-probes: the base scenes alone)")
    p.set_defaults(func=cmd_build_assets)

    p = sub.add_parser("eval", parents=[common], help="print IR metrics per retriever as JSON")
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test", help="query set name (stamps: captions)")
    p.add_argument("--queries", type=Path)
    p.add_argument("--qrels", type=Path)
    p.add_argument("--retriever", action="append")
    p.add_argument("--k", type=int, default=100)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", parents=[common], help="train the heads of trainable retrievers; writes checkpoints")
    p.add_argument("--retriever", action="append", help="dual-split, dual-fused, dual-gcl or ciea (repeatable; "
                   "default: all)")
    p.add_argument("--corpus", action="append", default=None,
                   help="training corpora (default: stamps and scenes; never a test split)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default: per retriever, see ciea/train.py)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lam", type=float, help="CIEA: weight of the complementary loss L_comp (default: the "
                   "schedule in ciea/train.py, chosen on dev; the paper uses 0.1)")
    p.add_argument("--patience", type=int, help="epochs without dev improvement before stopping")
    p.add_argument("--pairs-per-epoch", type=int, help="sample this many training queries per epoch")
    p.add_argument("--group-size", type=int, help="pairs drawn together from scenes sharing a caption, so they "
                   "meet as in-batch negatives (default 8; 1 = plain random batches)")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-minutes", type=float, help="training-time budget per retriever; stops after the "
                   "epoch that crosses it (Ctrl-C also stops and keeps the best epoch)")
    p.add_argument("--no-weights", action="store_true", help="CIEA ablation: plain attention in the extractor")
    p.add_argument("--ciea", action="append", metavar="KEY=VALUE",
                   help="CIEA head option, e.g. patch_grid=3, anchor=false, attention_pool=false, delimiters=false, "
                   "comp_view=extracted (repeatable; see CIEAConfig in ciea/retrievers/ciea.py)")
    p.add_argument("--align-weight", type=float, help="CIEA: weight of the weight map's alignment loss (default 1)")
    p.add_argument("--hard-negative-epochs", type=int, help="second stage: up to this many epochs with one mined "
                   "hard negative per text query, from the best first-stage head (default 0 = none)")
    p.add_argument("--hard-negative-pool", type=int, help="mined negatives kept per query (default 10)")
    p.add_argument("--resume", action="store_true", help="continue from the saved checkpoint (history is kept)")
    p.add_argument("--device", help="torch device, e.g. cuda (default: cuda when available, else cpu)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("ablate", parents=[common], help="train CIEA variants from scratch at equal budget over "
                       "seeds; print dev and test tables (Markdown)")
    p.add_argument("--variants", nargs="+", help="variant names (default: all of ciea/ablation.py's VARIANTS)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--max-minutes", type=float, default=2.0, help="training budget per run (default 2)")
    budget.add_argument("--epochs", type=int, help="train each run this many epochs instead (the same pairs for all)")
    p.add_argument("--out", type=Path, help="one JSON per run; finished runs are reused (default .cache/ablations)")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("space-files", parents=[common], help="print the files a Hugging Face Space upload "
                       "takes, one relative path a line")
    p.set_defaults(func=cmd_space_files)

    p = sub.add_parser("deploy-space", parents=[common], help="upload exactly those files to a Hugging Face "
                       "Space (token: $HF_TOKEN or 'hf auth login')")
    p.add_argument("space", metavar="OWNER/NAME", help="the Space's id, e.g. my-name/ciea-explorer")
    p.add_argument("--private", action="store_true", help="create the Space as private (new Spaces only)")
    p.set_defaults(func=cmd_deploy_space)
    return parser


#: Commands that run batch work (encoding, training); they set thread counts once, explicitly.
BATCH_COMMANDS = ("build", "train", "geometry")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in BATCH_COMMANDS:
        from ciea.config import configure_threads

        configure_threads()
    if getattr(args, "command", None) == "train" and not args.corpus:
        from ciea.train import DEFAULT_CORPORA

        args.corpus = list(DEFAULT_CORPORA)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (InputError, CorpusError, BackboneLoadError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (IndexStoreError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ARTEFACT

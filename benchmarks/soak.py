"""Soak test: many concurrent API sessions against the app on loopback, for a bounded time.

    python -m benchmarks.soak --clients 16 --duration 180            # launches python app.py itself
    python -m benchmarks.soak --clients 4 --duration 60 --url http://127.0.0.1:7860/ --pid 1234

Each client is its own ``gradio_client.Client`` in its own thread, issuing a seeded mix of text
queries, odd inputs (``ODD_INPUTS``, each with the outcome it must get) and image queries where
the app has ``/search_by_image``. Prints a JSON summary; exits 1 when a target is missed: zero
errors, the server still answering, p95 under 2 s, memory growth after warm-up under 10%.
Only loopback URLs are accepted, and clients, duration and requests are capped.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, namedtuple
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MAX_CLIENTS = 64
MAX_DURATION_S = 3600
MAX_REQUESTS_PER_CLIENT = 10_000
P95_TARGET_S = 2.0
GROWTH_TARGET_PCT = 10.0
STARTUP_TIMEOUT_S = 240
RSS_SAMPLE_EVERY_S = 0.5
ERROR_SAMPLES = 10
#: Share of requests by kind (image queries only where the app has the endpoint).
MIX = {"text": 0.70, "odd": 0.15, "image": 0.15}
K = 10  # results per query, as the app's default


# -- the server ----------------------------------------------------------------------------
def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    with contextlib.suppress(ValueError):
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    return False


@dataclass
class LaunchedApp:
    url: str
    pid: int
    process: subprocess.Popen

    def exit_code(self) -> int | None:
        """None while running; else the exit status (negative: killed by that signal)."""
        return self.process.poll()


@contextlib.contextmanager
def launch_app(log: Path | None = None, timeout_s: float = STARTUP_TIMEOUT_S,
               env: dict[str, str] | None = None, cwd: Path = ROOT) -> Iterator[LaunchedApp]:
    """``python app.py`` in ``cwd`` (default: this project) on a free loopback port; yields once
    the page answers, stops it after."""
    with socket.socket() as sock:  # a free loopback port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = log or Path(tempfile.mkdtemp(prefix="ciea-soak-")) / "app.log"
    full_env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                    GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **(env or {}))
    url = f"http://127.0.0.1:{port}/"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=cwd, env=full_env, stdout=fh,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(url):
            if proc.poll() is not None:
                raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"app did not answer in {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield LaunchedApp(url, proc.pid, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def rss_mb(pid: int, key: str = "VmRSS") -> float | None:
    """Resident memory of ``pid`` and its children in MB, from /proc (``key="VmHWM"``: each one's
    peak); None when it is gone."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{p}/status").read_text()
            total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith(key + ":")), 0)
            for task in Path(f"/proc/{p}/task").glob("*/children"):
                todo += [int(c) for c in task.read_text().split()]
    return total / 1024 if total else None


# -- the workload --------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One request: what to send and whether the app must answer with results or a refusal."""

    kind: str  # "text" | "odd" | "image"
    endpoint: str
    args: tuple
    expect_error: bool = False
    label: str = ""


#: Odd inputs (query, k, retrievers-or-None for "the usual ones", must be refused).
ODD_INPUTS = [
    ("", None, None, True, "empty"),
    ("   \t ", None, None, True, "whitespace"),
    ("<img src=x onerror=alert(1)>", None, None, False, "markup"),
    ("<script>alert(1)</script> elephant", None, None, False, "script"),
    ("🐘 elephant 🎈", None, None, False, "emoji"),
    ("فيل كبير", None, None, False, "right-to-left"),
    ("an elephant 象 слон", None, None, False, "mixed scripts"),
    ("red\x00ball\x1b[0m", None, None, False, "control characters"),
    ("ball " * 400, None, None, False, "2000 characters"),
    ("a frog", 0, None, True, "k = 0"),
    ("a frog", 1000, None, True, "k too large"),
    ("a frog", None, ["no-such-retriever"], True, "unknown retriever"),
    ("a frog", None, [], True, "no retriever"),
]


def corpus_queries(assets_dir: Path, corpus: str, limit: int = 300) -> list[str]:
    """Judged query texts of a corpus where it ships them, else its captions."""
    from ciea.data.schema import load_corpus, read_jsonl

    texts = [str(obj["text"]) for path in sorted((assets_dir / corpus).glob("queries_*.jsonl"))
             for _, obj in read_jsonl(path)]
    return texts[:limit] or [doc.text for doc in load_corpus(corpus, assets_dir)][:limit]


@dataclass
class Workload:
    """Per-corpus queries and retrievers, odd inputs and thumbnails, drawn from with a seeded RNG."""

    queries: dict[str, list[str]]
    retrievers: dict[str, list[str]]
    images: list[Path]
    #: Per corpus, the retrievers that answered an image probe (absent: no image queries there).
    image_retrievers: dict[str, list[str]] = field(default_factory=dict)

    def draw(self, rng: random.Random) -> Case:
        corpus = rng.choice(sorted(self.queries))
        names = self.retrievers[corpus]
        kinds = [k for k in MIX if k != "image" or (self.images and self.image_retrievers.get(corpus))]
        kind = rng.choices(kinds, weights=[MIX[k] for k in kinds])[0]
        if kind == "image":
            from gradio_client import handle_file

            path = rng.choice(self.images)
            return Case("image", "/search_by_image",
                        (handle_file(str(path)), corpus, self.image_retrievers[corpus], K), label=path.name)
        if kind == "odd":
            text, k, chosen, refuse, label = rng.choice(ODD_INPUTS)
            return Case("odd", "/search", (text, corpus, names if chosen is None else chosen,
                                           K if k is None else k),
                        expect_error=refuse, label=label)
        text = rng.choice(self.queries[corpus])
        return Case("text", "/search", (text, corpus, names, K), label=text[:40])


def payload(output: object) -> dict:
    """The JSON part of an endpoint's answer (its last dict output), or {}."""
    return next((o for o in (output if isinstance(output, (list, tuple)) else [output])[::-1]
                 if isinstance(o, dict)), {})


def judge(case: Case, output: object) -> str | None:
    """None when the app answered as it must, else what was wrong."""
    data = payload(output)
    if not data:
        return f"{case.kind} {case.label!r}: no JSON in the answer"
    if case.expect_error:
        return None if data.get("error") else f"odd {case.label!r}: accepted, should be refused"
    if data.get("error"):
        return f"{case.kind} {case.label!r}: refused: {str(data['error'])[:160]}"
    if not data.get("results") or not any(data["results"].values()):
        return f"{case.kind} {case.label!r}: no results ({'; '.join(data.get('notices', []))[:160]})"
    return None


def judge_exception(case: Case, exc: Exception) -> str | None:
    """An exception is an error, except Gradio's own input validation refusing a case that had to
    be refused (a value outside a slider's range or a checkbox group's choices): that is an
    ``AppError`` carrying the reason, raised before our handler runs."""
    if case.expect_error and type(exc).__name__ == "AppError" and str(exc).strip():
        return None
    return f"{case.kind} {case.label!r}: {type(exc).__name__}: {str(exc)[:200]}"


# -- the run -------------------------------------------------------------------------------
#: One request's outcome (``error`` None when the app answered as it must).
Sample = namedtuple("Sample", "kind latency_s error after_warmup done_at_s")


@dataclass
class SoakReport:
    url: str
    clients: int
    wall_s: float
    requests: int
    errors: int
    by_kind: dict[str, int]
    error_samples: dict[str, int]
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    latency_by_kind: dict[str, dict[str, float | int | None]]
    throughput_rps: float
    rss_warm_mb: float | None
    rss_end_mb: float | None
    growth_pct: float | None
    server_answers_after: bool
    targets: dict[str, bool] = field(default_factory=dict)
    server_exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return all(self.targets.values())

    def to_json(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    return float(np.percentile(values, q, method="inverted_cdf")) if len(values) else None


def latency(samples: list[Sample]) -> dict[str, float | int | None]:
    """n, p50, p95 and max of the samples after warm-up (all of them when none is)."""
    values = [s.latency_s for s in samples if s.after_warmup] or [s.latency_s for s in samples]
    return {"n": len(values), **{f"p{q}_s": percentile(values, q) for q in (50, 95)},
            "max_s": max(values, default=None)}


def make_client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, max_workers=2, download_files=False, analytics_enabled=False)


def _enum(parameter: dict) -> list[str] | None:
    """The allowed values an API parameter declares (a dropdown's or checkbox group's choices)."""
    kind = parameter.get("type") or {}
    values = kind.get("enum") or (kind.get("items") or {}).get("enum")
    return [str(v) for v in values] if values else None


def endpoints(client) -> tuple[dict[str, dict], dict[str, list[str] | None]]:
    """The app's named endpoints, and the choices each ``/search`` parameter declares."""
    named = (client.view_api(print_info=False, return_format="dict") or {}).get("named_endpoints", {})
    return named, {p.get("parameter_name"): _enum(p) for p in named.get("/search", {}).get("parameters", [])}


def discover(client, assets_dir: Path, images: bool = True) -> Workload:
    """Corpora the app serves (of those with local query files), their answering retrievers,
    and whether ``/search_by_image`` exists with the (image, corpus, retrievers, k) signature.
    Names come from the API's declared choices, so a probe never sends a value Gradio refuses."""
    from ciea.retrievers import REGISTRY

    named, choices = endpoints(client)
    if "/search" not in named:
        raise RuntimeError(f"the app has no /search endpoint (has {sorted(named)})")
    names = choices.get("retrievers") or list(REGISTRY)
    local = sorted(p.name for p in assets_dir.iterdir() if (p / "corpus.jsonl").is_file())
    served = choices.get("corpus") or local
    queries, retrievers = {}, {}
    for corpus in [c for c in local if c in served]:
        texts = corpus_queries(assets_dir, corpus)
        found = payload(client.predict(texts[0], corpus, names, 1, api_name="/search")).get("results")
        if found:
            queries[corpus], retrievers[corpus] = texts, list(found)
    if not queries:
        raise RuntimeError("no corpus answered a probe query")
    image_api = named.get("/search_by_image")
    thumbs: list[Path] = []
    by_image: dict[str, list[str]] = {}
    if images and image_api and len(image_api.get("parameters", [])) == 4:
        from gradio_client import handle_file

        pool = sorted((assets_dir / "stamps" / "thumbs").rglob("*.webp")) or sorted(assets_dir.rglob("*.webp"))
        thumbs = random.Random(0).sample(pool, min(60, len(pool)))
        for corpus, answering in retrievers.items() if thumbs else ():  # only image towers answer images
            found = payload(client.predict(handle_file(str(thumbs[0])), corpus, answering, 1,
                                           api_name="/search_by_image")).get("results")
            if found:
                by_image[corpus] = list(found)
    return Workload(queries, retrievers, thumbs if by_image else [], by_image)


def run_soak(url: str, clients: int = 16, *, duration_s: float | None = None,
             requests_per_client: int | None = None, warmup: float = 0.2, pid: int | None = None,
             seed: int = 0) -> SoakReport:
    """Run ``clients`` concurrent sessions for ``duration_s`` seconds or ``requests_per_client``
    requests each. The first ``warmup`` share of the run is left out of latency figures and
    ends with the "warm" memory reading; memory is read only when ``pid`` is given."""
    for ok, refusal in (
            (is_loopback(url), f"refusing to load-test {url}: only loopback URLs are allowed"),
            ((duration_s is None) != (requests_per_client is None),
             "give exactly one of duration_s and requests_per_client"),
            (1 <= clients <= MAX_CLIENTS, f"clients must be 1..{MAX_CLIENTS}"),
            (duration_s is None or 0 < duration_s <= MAX_DURATION_S, f"duration must be in (0, {MAX_DURATION_S}] s"),
            (requests_per_client is None or 1 <= requests_per_client <= MAX_REQUESTS_PER_CLIENT,
             f"requests per client must be 1..{MAX_REQUESTS_PER_CLIENT}")):
        if not ok:
            raise ValueError(refusal)
    from ciea.config import Settings

    workload = discover(make_client(url), Settings().assets_dir)
    sessions = [make_client(url) for _ in range(clients)]  # connection set-up is not measured

    samples: list[Sample] = []
    warm_per_client = math.ceil(warmup * requests_per_client) if requests_per_client else 0
    start_gate = threading.Barrier(clients + 1)

    def client_loop(index: int, client) -> None:
        rng = random.Random(seed * 1000 + index)
        start_gate.wait()
        n = 0
        while (time.perf_counter() - t0 < duration_s) if duration_s is not None else n < requests_per_client:
            case = workload.draw(rng)
            began = time.perf_counter()
            in_warmup = n < warm_per_client if requests_per_client else began - t0 < warmup * duration_s
            try:
                error = judge(case, client.predict(*case.args, api_name=case.endpoint))
            except Exception as exc:  # every failure is a finding, never a crashed client
                error = judge_exception(case, exc)
            n += 1
            done = time.perf_counter()
            samples.append(Sample("refusal" if case.expect_error else case.kind, done - began, error,
                                  not in_warmup, done - t0))  # list.append is atomic

    threads = [threading.Thread(target=client_loop, args=(i, c), daemon=True) for i, c in enumerate(sessions)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start_gate.wait()
    readings: list[tuple[float, float]] = []  # (seconds since start, MB), read while the clients run
    while running := [t for t in threads if t.is_alive()]:
        if pid and (value := rss_mb(pid)) is not None:
            readings.append((time.perf_counter() - t0, value))
        running[0].join(RSS_SAMPLE_EVERY_S)
    wall = time.perf_counter() - t0
    rss_end = rss_mb(pid) if pid else None

    try:  # the server must still answer a normal query with a fresh session
        corpus = min(workload.queries)
        answer = make_client(url).predict(workload.queries[corpus][0], corpus, workload.retrievers[corpus], 3,
                                          api_name="/search")
        answers_after = judge(Case("text", "/search", ()), answer) is None
    except Exception:
        answers_after = False

    # memory once warm: the first reading after the warm-up share of the run (of time, or of every
    # client's requests)
    warm_at = warmup * duration_s if duration_s is not None else \
        max((s.done_at_s for s in samples if not s.after_warmup), default=0.0)
    rss_warm = next((v for t, v in readings if t >= warm_at), None)
    growth = (rss_end - rss_warm) / rss_warm * 100 if rss_end and rss_warm else None
    errors = Counter(s.error[:160] for s in samples if s.error)  # the same failure once, with its count
    by_kind = Counter(s.kind for s in samples)
    overall = latency([s for s in samples if s.kind != "refusal"])
    p95 = overall["p95_s"]
    targets = {"zero errors": not errors, "server answers after": answers_after,
               f"p95 < {P95_TARGET_S:g} s": p95 is not None and p95 < P95_TARGET_S}
    if growth is not None:
        targets[f"memory growth < {GROWTH_TARGET_PCT:g}%"] = growth < GROWTH_TARGET_PCT
    return SoakReport(
        url=url, clients=clients, wall_s=wall, requests=len(samples), errors=errors.total(), by_kind=dict(by_kind),
        error_samples=dict(errors.most_common(ERROR_SAMPLES)), p50_s=overall["p50_s"], p95_s=p95,
        max_s=overall["max_s"],
        latency_by_kind={k: latency([s for s in samples if s.kind == k]) for k in by_kind},
        throughput_rps=len(samples) / wall if wall else 0.0, rss_warm_mb=rss_warm, rss_end_mb=rss_end,
        growth_pct=growth, server_answers_after=answers_after, targets=targets,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds to run")
    parser.add_argument("--url", help="a running app on loopback (default: launch python app.py)")
    parser.add_argument("--pid", type=int, help="the server's process id, for memory readings with --url")
    args = parser.parse_args(argv)
    if args.url:  # run_soak refuses anything but loopback
        report = run_soak(args.url, args.clients, duration_s=args.duration, pid=args.pid)
    else:
        with launch_app() as app:
            report = run_soak(app.url, args.clients, duration_s=args.duration, pid=app.pid)
            report.server_exit_code = app.exit_code()
            if report.server_exit_code is not None:
                report.targets["server process alive"] = False
    print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Model input for a batch of videos: the stock Qwen-VL video processor against the patching one.

``cookbook_infer.backends.transformers.model_inputs`` builds what the model is fed (prompt tokens, normalised
patches, grids) on the model's thread; its video side is :mod:`cookbook_infer.backends._video_patches`, and the
reference is the same function with the stock processor, measured in the same run, alternating. Both must
give equal tensors before a time counts. The figures are milliseconds a video at batches of 1 and 32 (the
median of ``--repeats``), for the tiny Reason1 (Qwen2.5-VL) and Reason2 (Qwen3-VL) checkpoints with the
Reason1 reward model's vision settings, and the whole Yes/No scoring of a batch of 32 (model input and the
forward pass) both ways.

    .venv/bin/python benchmarks/bench_model_input.py [--repeats 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

from _machine import cpu_model, gpu_name, results_name

from cookbook_data.schemas import VideoSample
from cookbook_data.testing.videos import SyntheticVideo, write_video
from cookbook_infer.backends import transformers as backend
from cookbook_infer.run import flat_videos
from cookbook_infer.testing import Arch, make_tiny_model
from cookbook_reward.config import ScorerConfig
from cookbook_reward.scorers import build_scorer

RESULTS = Path(__file__).parent / "results"
BATCHES = (1, 32)
MODEL_TYPES: dict[Arch, str] = {"reason1": "qwen2_5_vl", "reason2": "qwen3_vl"}
WAYS = ("stock", "patching")


def _processor(way: str) -> AbstractContextManager[object]:
    """``model_inputs`` with the stock video processor (the reference) or, as it ships, the patching one."""
    if way == "stock":
        return mock.patch.object(backend, "patching_processor", lambda processor: processor)
    return nullcontext()


def _both_ways(run: Callable[[], object], repeats: int, per: int) -> dict[str, float]:
    """Milliseconds per item of ``run`` with the stock and with the patching processor: each warmed once (its
    batch's shapes), then timed ``repeats`` times, the two alternating; the medians."""
    times: dict[str, list[float]] = {name: [] for name in WAYS}
    for way in WAYS:
        with _processor(way):
            run()
    for _ in range(repeats):
        for way in WAYS:
            with _processor(way):
                start = time.perf_counter()
                run()
                times[way].append(time.perf_counter() - start)
    return {name: statistics.median(values) / per * 1000 for name, values in times.items()}


def _equal(first: Any, second: Any) -> bool:
    import torch

    return first.keys() == second.keys() and all(
        torch.equal(first[key], second[key]) if isinstance(first[key], torch.Tensor) else first[key] == second[key]
        for key in first
    )


def _measure(arch: Arch, root: Path, samples: list[VideoSample], device: str, repeats: int) -> list[dict[str, Any]]:
    """One checkpoint's rows: model input at each batch size, then a whole Yes/No batch, both ways."""
    model_type = MODEL_TYPES[arch]
    model = str(make_tiny_model(arch, root / arch))
    scorer: Any = build_scorer(ScorerConfig(model=model, scorer="yesno", nframes=8, device=device), root)
    prepared = [scorer.prepare(sample) for sample in samples]
    _, conversations, per_item = scorer.predictor.ask(prepared)
    videos = flat_videos(per_item)
    assert videos is not None
    processor = scorer.predictor.backend.loaded.processor
    on = None if device == "cpu" else device

    def inputs(batch: int) -> Any:
        return backend.model_inputs(processor, model_type, conversations[:batch], videos=videos[:batch], device=on)

    with _processor("stock"):
        reference = inputs(len(samples))
    if not _equal(inputs(len(samples)), reference):
        raise AssertionError(f"{arch}: the patching processor's model input differs from the stock one")
    frames = videos[0][1]
    size = f"{frames.shape[0]} frames of {frames.shape[3]}x{frames.shape[2]}"
    rows = []
    for batch in BATCHES:
        ms = _both_ways(lambda: inputs(batch), repeats, batch)  # noqa: B023 (called before the loop moves on)
        rows.append({"model": arch, "video": size, "what": "model input", "batch": batch, **_ratio(ms)})
    ms = _both_ways(lambda: scorer.score(prepared), repeats, len(prepared))
    rows.append({"model": arch, "video": size, "what": "Yes/No scoring", "batch": len(prepared), **_ratio(ms)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs of each way at each batch size.")
    parser.add_argument("--device", default="cpu", help="Where the model runs: cpu (default) or cuda.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Folder the results file is written to.")
    args, _ = parser.parse_known_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        paths = [write_video(SyntheticVideo(root / f"v{i}.mp4", 24, 48 + 2 * i, 160, 120, "h264")) for i in range(16)]
        samples = [VideoSample(id=f"s{i}", path=str(paths[i % len(paths)])) for i in range(max(BATCHES))]
        rows = [row for arch in MODEL_TYPES for row in _measure(arch, root, samples, args.device, args.repeats)]

    result = {
        "benchmark": "model_input",
        "machine": f"CPU: {cpu_model()}" + (f"; model on {gpu_name()}" if args.device.startswith("cuda") else ""),
        "videos": "160x120 clips at the reward model's vision settings (8 frames, scaled up to its minimum size)",
        "reference": "model_inputs with the stock Qwen-VL video processor",
        "figures": "ms per video, median of the runs; speedup = stock / patching",
        "rows": rows,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / results_name("model_input", args.device)).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _ratio(ms: dict[str, float]) -> dict[str, float]:
    return {
        "stock_ms": round(ms["stock"], 2),
        "patching_ms": round(ms["patching"], 2),
        "speedup": round(ms["stock"] / ms["patching"], 2),
    }


if __name__ == "__main__":
    main()

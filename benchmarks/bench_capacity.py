"""Videos per second per GPU for the capacity model of docs/scaling.md: the Cosmos-Reason1-7B-Reward method at
full size.

The model has the Qwen2.5-VL-7B architecture of Cosmos-Reason1-7B-Reward (8.3 B parameters, bfloat16) with
random weights: its weights cannot be downloaded here, and a forward pass costs the same whatever the weights
are. It runs through the toolkit's own path (the Yes/No scorer over the transformers backend, frames sampled by
cookbook-data), on clips shaped like the recipe's input: 5 s of 1280x720 video at 24 fps, sampled with the
published frame rule of the reward model (:data:`cookbook_infer.registry.REWARD_MODEL_VISION`: every k-th frame,
at most 160, so here every frame; each frame within 9216 * 28 * 28 * 2 / frames pixels; about 7.2 k visual
tokens per clip). Measured at batch sizes 1, 4 and 8:

- videos/s end to end (decoding on this host's CPUs, then the model), and the model's share alone
  (end-to-end time minus the decode and preprocessing time of the same batch, measured on its own);
- decode CPU cost: CPU seconds (all threads) to sample and resize one clip's frames;
- the vision tower's windows attended in batched calls (what the toolkit loads) against transformers' own
  loop of one attention call per window, the reference measured in the same run at batch size 4.

Needs a CUDA GPU; on a machine without one it says so and writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import cores, cpu_model, gpu_name, results_name

from cookbook_data.schemas import VideoSample
from cookbook_data.testing.videos import SyntheticVideo, write_video
from cookbook_infer.backends._vision_attention import batch_vision_attention
from cookbook_infer.registry import REWARD_MODEL_VISION
from cookbook_infer.testing import make_tiny_model

RESULTS = Path(__file__).parent / "results"
CLIP = SyntheticVideo(Path("clip.mp4"), fps=24, num_frames=120, width=1280, height=720, codec="h264", square=96)
"""The clips' shape (each written under its own name, its square moving at its own speed)."""
BATCH_SIZES = (1, 4, 8)


def reason1_7b_config(tokenizer: Any) -> Any:
    """Qwen2.5-VL-7B's published dimensions, with the special-token ids of ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in {
            "image_token_id": "<|image_pad|>",
            "video_token_id": "<|video_pad|>",
            "vision_start_token_id": "<|vision_start|>",
            "vision_end_token_id": "<|vision_end|>",
        }.items()
    }
    text = {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 128000,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "tie_word_embeddings": False,
    }
    vision = {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
    }
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)  # type: ignore[no-untyped-call]


def random_7b_backend(processor_dir: Path) -> Any:
    """A transformers backend around a random-weight Reason1-7B-shaped model on the GPU, in bfloat16, its vision
    attention as transformers builds it (one call per window)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from cookbook_infer.backends.transformers import LoadedModel, TransformersBackend

    processor = AutoProcessor.from_pretrained(processor_dir)  # type: ignore[no-untyped-call]
    processor.tokenizer.padding_side = "left"
    config = reason1_7b_config(processor.tokenizer)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    model.eval()
    return TransformersBackend.from_loaded(LoadedModel(model_id=str(processor_dir), model=model, processor=processor))


def decode_cost(scorer: Any, samples: list[VideoSample], patch_factor: int) -> tuple[float, float, int, int]:
    """(CPU seconds, wall seconds) per clip to sample and resize its frames, its frames kept, and its visual
    tokens (one per ``patch_factor``-pixel square of two frames)."""
    from cookbook_infer.vision import model_videos

    conversations = scorer.predictor.conversations(samples)
    cpu, wall, frames, tokens = [], [], 0, 0
    for conversation in conversations:
        started_cpu, started = time.process_time(), time.perf_counter()
        [(video, _)] = model_videos([conversation], patch_factor)  # type: ignore[arg-type]
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
        frames = len(video.frame_indices)
        tokens = frames * video.resized_height * video.resized_width // (2 * patch_factor**2)
    return statistics.median(cpu), statistics.median(wall), frames, tokens


def measure(scorer: Any, samples: list[VideoSample], batch_size: int) -> dict[str, float]:
    """Videos/s scoring ``samples`` in batches of ``batch_size``, and the preprocessing share of that time."""
    import torch

    from cookbook_infer.backends.transformers import model_inputs

    backend = scorer.predictor.backend
    batches = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    scorer.score(batches[0])  # warm-up at this shape
    torch.cuda.synchronize()
    started = time.perf_counter()
    for batch in batches:
        records = scorer.score(batch)
        if any(record.score is None for record in records):
            raise RuntimeError(f"unscored video in batch of {batch_size}: {records}")
    torch.cuda.synchronize()
    total = time.perf_counter() - started
    started = time.perf_counter()
    for batch in batches:
        model_inputs(backend.loaded.processor, backend.model_type, scorer.predictor.conversations(batch))
    preprocess = time.perf_counter() - started
    return {
        "batch_size": batch_size,
        "videos": len(samples),
        "videos_per_s": round(len(samples) / total, 3),
        "model_videos_per_s": round(len(samples) / max(total - preprocess, 1e-9), 3),
        "preprocess_s_per_video": round(preprocess / len(samples), 3),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
    }


def main() -> None:
    import torch

    from cookbook_reward.config import ScorerConfig
    from cookbook_reward.scorers import build_scorer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8, help="Clips scored at each batch size.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Folder the results file is written to.")
    args, _ = parser.parse_known_args()
    if not torch.cuda.is_available():
        print("bench_capacity: needs a CUDA GPU; skipped")
        return
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        samples = [
            VideoSample(
                id=f"clip{i}",
                path=str(write_video(dataclasses.replace(CLIP, path=root / f"clip{i}.mp4", velocity=(5 + i, 3)))),
            )
            for i in range(args.videos)
        ]
        processor_dir = make_tiny_model("reason1", root / "processor")
        started = time.perf_counter()
        backend = random_7b_backend(processor_dir)
        build_s = time.perf_counter() - started
        parameters = sum(p.numel() for p in backend.loaded.model.parameters())
        recipe = REWARD_MODEL_VISION
        settings = ScorerConfig(
            model=str(processor_dir),
            scorer="yesno",
            max_strided_frames=recipe.max_strided_frames,
            total_pixels=recipe.total_pixels,
            device="cuda",
        )
        scorer = build_scorer(settings, root, backend)
        cpu_s, wall_s, frames, tokens = decode_cost(scorer, samples[:4], backend.patch_factor)
        per_window = measure(scorer, samples, 4)
        batch_vision_attention(backend.loaded.model)
        rows = [measure(scorer, samples, size) for size in BATCH_SIZES]
    best = max(rows, key=lambda row: row["videos_per_s"])
    [batched] = [row for row in rows if row["batch_size"] == per_window["batch_size"]]
    result = {
        "benchmark": "capacity",
        "machine": f"{gpu_name()}; host CPU {cpu_model()}, {cores()} cores",
        "model": (
            f"Qwen2.5-VL-7B architecture (Cosmos-Reason1-7B-Reward), {parameters / 1e9:.2f} B parameters, random "
            "weights, bfloat16, transformers backend (sdpa attention), Yes/No scorer"
        ),
        "clip": {
            **{key: value for key, value in dataclasses.asdict(CLIP).items() if key not in ("path", "velocity")},
            "frame_rule": recipe.model_dump(exclude_none=True),
            "frames_kept": frames,
            "visual_tokens": tokens,
        },
        "model_build_s": round(build_s, 1),
        "decode_cpu_s_per_clip": round(cpu_s, 3),
        "decode_wall_s_per_clip": round(wall_s, 3),
        "reference_per_window_attention": per_window,
        "rows": rows,
        "batched_windows_over_per_window_model_only": round(
            batched["model_videos_per_s"] / per_window["model_videos_per_s"], 2
        ),
        "videos_per_gpu_s": best["videos_per_s"],
        "model_only_videos_per_gpu_s": best["model_videos_per_s"],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / results_name("capacity", "cuda")).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

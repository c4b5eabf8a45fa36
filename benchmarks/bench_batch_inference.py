"""Videos per second of batched inference against one-video-at-a-time references.

Three references, measured in the same run on the same tiny Reason2 checkpoint, videos, greedy decoding and
vision settings: the published scripts' way (a process per video, loading the model each time), the model
reloaded per video inside one process, and a loop over videos with the model loaded once. The script checks
that every output is identical, then writes the ratios to benchmarks/results/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model

from cookbook_data.prompts import load_prompt
from cookbook_data.testing.videos import SyntheticVideo, write_video
from cookbook_data.video import VisionSettings
from cookbook_infer.backends.transformers import TransformersBackend
from cookbook_infer.registry import resolve_model
from cookbook_infer.testing import make_tiny_model

VIDEOS = 32
BATCH = 8
RELOADED = 8
MAX_NEW_TOKENS = 16
"""Videos timed in the reload-per-video loop (extrapolated to all videos)."""
RESULTS = Path(__file__).parent / "results"


def _generate_in_a_new_process(model: str, video: Path) -> str:
    """What the published scripts do: one process per video, loading the model, answering, exiting."""
    command = [sys.executable, "-m", "cookbook_infer", "generate", "--model", model, "--task", "critic"]
    command += ["--temperature", "0", "--max-new-tokens", str(MAX_NEW_TOKENS), "--fps", "4", str(video)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return str(json.loads(result.stdout.splitlines()[-1])["raw_text"])


def main() -> None:
    import torch

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        videos = [
            write_video(
                SyntheticVideo(root / f"v{i}.mp4", fps=24, num_frames=48 + 2 * i, width=160, height=120, codec="h264")
            )
            for i in range(VIDEOS)
        ]
        backend = TransformersBackend(str(make_tiny_model("reason2", root / "tiny")))
        template = load_prompt("reason2_videophy2_critic")
        vision = VisionSettings(fps=4)
        conversations = [template.conversation([vision.video_part(str(v))]) for v in videos]
        preset = resolve_model(backend.model_id).direct_sampling  # what `generate --temperature 0` uses
        sampling = preset.model_copy(update={"temperature": 0.0, "max_new_tokens": MAX_NEW_TOKENS, "seed": 0})
        backend.generate(conversations[:2], sampling)  # warm-up

        started = time.perf_counter()
        per_process = [_generate_in_a_new_process(backend.model_id, video) for video in videos[:RELOADED]]
        process_s = (time.perf_counter() - started) * VIDEOS / RELOADED

        started = time.perf_counter()
        reloaded = [TransformersBackend(backend.model_id).generate([c], sampling)[0] for c in conversations[:RELOADED]]
        reload_s = (time.perf_counter() - started) * VIDEOS / RELOADED

        started = time.perf_counter()
        one_by_one = [backend.generate([c], sampling)[0] for c in conversations]
        loop_s = time.perf_counter() - started

        started = time.perf_counter()
        batched = []
        for start in range(0, VIDEOS, BATCH):
            batched.extend(backend.generate(conversations[start : start + BATCH], sampling))
        batch_s = time.perf_counter() - started

    identical = (
        batched == one_by_one
        and reloaded == one_by_one[:RELOADED]
        and per_process == [g.text for g in one_by_one[:RELOADED]]
    )
    result = {
        "benchmark": "batched transformers inference vs one video at a time",
        "machine": f"{cpu_model()}, {torch.get_num_threads()} torch threads, CPU only",
        "model": "tiny random Qwen3-VL (Cosmos-Reason2 architecture)",
        "videos": VIDEOS,
        "batch_size": BATCH,
        "max_new_tokens": sampling.max_new_tokens,
        "process_per_video_videos_per_s": round(VIDEOS / process_s, 2),
        "reload_per_video_videos_per_s": round(VIDEOS / reload_s, 2),
        "one_by_one_videos_per_s": round(VIDEOS / loop_s, 2),
        "batched_videos_per_s": round(VIDEOS / batch_s, 2),
        "speedup_vs_process_per_video": round(process_s / batch_s, 2),
        "speedup_vs_reload_per_video": round(reload_s / batch_s, 2),
        "speedup_vs_one_by_one": round(loop_s / batch_s, 2),
        "identical_outputs": identical,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch_inference.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not identical:
        raise SystemExit("batched outputs differ from one-by-one outputs")


if __name__ == "__main__":
    main()

"""Frame sampling throughput: ``sample_frames`` + ``resize_frames`` against ``qwen_vl_utils.fetch_video``.

Both read the same 720p H.264 clips with the Reason1 and Reason2 vision settings, in the same run,
alternating, and every clip's frames must be identical (``torch.equal``) before a time counts. The figures
are frames sampled per second (best of ``--repeats`` per clip, summed over clips) and their ratio, plus
the time of each step (decord open, get_batch, tensor copy, resize; our two calls) timed on its own, and a
floor: the CPU time of decoding each clip with every non-reference picture skipped plus the bit-exact resize,
spread over the usable cores, against which the reference's time gives the largest ratio these cores allow.
Before each timed run the script waits (up to ``--settle`` seconds) for other processes to leave the CPUs
idle, since a shared machine's neighbours otherwise decide the figures.

    .venv/bin/python benchmarks/bench_frame_sampling.py [--repeats 3] [--clips DIR] [--settle 30]

Clips are rendered once (a textured background panned like a moving camera, sensor-like grain and moving
objects, encoded with libx264) and cached in ``--clips`` (a folder under the system temp dir by default).
Results go to ``benchmarks/results/frame_sampling.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cpu_model, wait_for_idle

from cookbook_data.cpus import usable_cores

RESULTS = Path(__file__).parent / "results"
WIDTH, HEIGHT = 1280, 720


@dataclass(frozen=True)
class Clip:
    name: str
    fps: int
    seconds: int
    keyint: int | None
    """Frames between keyframes; None for x264's default (250, plus scene cuts)."""
    bframes: int | None
    """Consecutive B-frames; None for the preset's default (3, as a pyramid)."""

    @property
    def frames(self) -> int:
        return self.fps * self.seconds


CLIPS = [
    Clip("24fps_10s", 24, 10, None, None),
    Clip("30fps_15s_gop1s", 30, 15, 30, None),
    Clip("25fps_20s", 25, 20, None, None),
    Clip("30fps_30s", 30, 30, None, None),
    Clip("60fps_12s_gop2s", 60, 12, 120, None),
    Clip("24fps_30s_gop2s_noB", 24, 30, 48, 0),
]
"""Frame rates, lengths and GOP structures as cameras and encoders produce them: x264 defaults, short
streaming GOPs, and a phone-like stream without B-frames."""

SETTINGS: dict[str, tuple[int, dict[str, Any]]] = {
    "reason1": (14, {"fps": 4.0, "total_pixels": 8192 * 28 * 28}),
    "reason2": (16, {"fps": 4.0}),
}
"""Name: (qwen-vl-utils image_patch_size, video options). Reason1 is Qwen2.5-VL (patch 14, factor 28)
with the cookbook's total-pixel budget; Reason2 is Qwen3-VL (patch 16, factor 32) with the defaults."""


def render(clip: Clip, path: Path) -> None:
    import av

    rng = np.random.default_rng(clip.fps * 1000 + clip.seconds)
    coarse = rng.integers(0, 256, (HEIGHT // 16 + 8, WIDTH // 16 + 24, 3), dtype=np.uint8).astype(np.float64)
    smooth = np.repeat(np.repeat(coarse, 16, 0), 16, 1)
    for axis in (0, 1):
        smooth = (np.roll(smooth, 4, axis) + np.roll(smooth, -4, axis) + 2 * smooth) / 4
    texture = np.clip(smooth + rng.integers(-24, 24, smooth.shape), 0, 255).astype(np.uint8)
    grain = rng.integers(0, 4, (8, HEIGHT, WIDTH, 1), dtype=np.uint8)
    span_x, span_y = texture.shape[1] - WIDTH, texture.shape[0] - HEIGHT
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream("libx264", rate=clip.fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        options: dict[str, object] = {"crf": "23", "preset": "veryfast"}
        if clip.keyint is not None:
            options["g"] = str(clip.keyint)
        if clip.bframes is not None:
            options["bf"] = str(clip.bframes)
        stream.options = options
        stream.codec_context.thread_type = "AUTO"  # frame-threaded x264, one slice per frame, as ffmpeg encodes
        for index in range(clip.frames):
            t = index / clip.fps
            x0 = int((np.sin(t * 0.7) * 0.5 + 0.5) * span_x)
            y0 = int((np.cos(t * 0.5) * 0.5 + 0.5) * span_y)
            image = texture[y0 : y0 + HEIGHT, x0 : x0 + WIDTH] + grain[index % len(grain)]
            for k in range(3):
                x = int((0.5 + 0.45 * np.sin(t * (1 + k) + k)) * (WIDTH - 120))
                y = int((0.5 + 0.45 * np.cos(t * (1.3 + k))) * (HEIGHT - 120))
                image[y : y + 120, x : x + 120] = (60 * k + 8 * index) % 256
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    partial.rename(path)


def clip_paths(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for clip in CLIPS:
        path = folder / f"{clip.name}.mp4"
        if not path.exists():
            print(f"rendering {path} ...", file=sys.stderr)
            render(clip, path)
        paths[clip.name] = path
    return paths


@dataclass
class Timing:
    clip: str
    frames: int
    resized: tuple[int, int]
    reference_s: float
    ours_s: float
    stages: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.reference_s / self.ours_s


def _best(function: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def stage_times(path: Path, patch: int, options: dict[str, Any], repeats: int) -> dict[str, float]:
    """Where the time goes: fetch_video's steps (decord open and index, get_batch, tensor copy and permute,
    resize) done one by one as it does them, and our two calls."""
    import decord
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    from cookbook_data.video import VisionSettings, sample_frames
    from cookbook_infer.vision import resize_frames

    settings = VisionSettings(patch_factor=2 * patch, **options)
    sampled = sample_frames(path, settings)
    size = [sampled.resized_height, sampled.resized_width]
    times = {"reference_open": math.inf, "reference_get_batch": math.inf}
    for _ in range(repeats):
        start = time.perf_counter()
        reader = decord.VideoReader(str(path))
        opened = time.perf_counter()
        batch = reader.get_batch(sampled.frame_indices).asnumpy()
        done = time.perf_counter()
        del reader  # an idle decord reader keeps its decoding threads spinning
        times["reference_open"] = min(times["reference_open"], opened - start)
        times["reference_get_batch"] = min(times["reference_get_batch"], done - opened)
    tensor = torch.tensor(batch).permute(0, 3, 1, 2)
    times["reference_tensor"] = _best(lambda: torch.tensor(batch).permute(0, 3, 1, 2), repeats)
    times["reference_resize"] = _best(
        lambda: resize(tensor, size, interpolation=InterpolationMode.BICUBIC, antialias=True).float(), repeats
    )
    times["ours_sample_frames"] = _best(lambda: sample_frames(path, settings), repeats)
    times["ours_resize_frames"] = _best(lambda: resize_frames(sampled), repeats)
    times["floor_decode_cpu"] = _least_cpu(lambda: _decode_reference_pictures(path), repeats)
    times["floor_resize_cpu"] = _least_cpu(lambda: resize_frames(sampled), repeats)
    return {name: round(value, 4) for name, value in times.items()}


def _cpu_seconds() -> float:
    """CPU time of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _least_cpu(function: Callable[[], object], repeats: int) -> float:
    least = math.inf
    for _ in range(repeats):
        start = _cpu_seconds()
        function()
        least = min(least, _cpu_seconds() - start)
    return least


def _decode_reference_pictures(path: Path) -> None:
    """Decode the whole clip on one thread, skipping every non-reference picture and converting nothing: less
    work than any reader that returns exact frames can do here, since the sampled frames reach the last one and
    every group of pictures holds some (a wanted non-reference picture only adds to it)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "NONE"
        stream.codec_context.skip_frame = "NONREF"
        for _ in container.decode(stream):
            pass


def measure(paths: dict[str, Path], repeats: int, settle_s: float) -> dict[str, list[Timing]]:
    import torch
    from qwen_vl_utils import fetch_video

    from cookbook_data.video import VisionSettings, sample_frames
    from cookbook_infer.vision import resize_frames

    def reference(path: Path, patch: int, options: dict[str, Any]) -> torch.Tensor:
        video: torch.Tensor = fetch_video({"video": str(path), **options}, image_patch_size=patch)
        return video

    def ours(path: Path, patch: int, options: dict[str, Any]) -> torch.Tensor:
        return resize_frames(sample_frames(path, VisionSettings(patch_factor=2 * patch, **options)))

    timings: dict[str, list[Timing]] = {}
    for setting, (patch, options) in SETTINGS.items():
        timings[setting] = []
        for name, path in paths.items():
            expected = reference(path, patch, options)  # also warms both paths up
            if not torch.equal(ours(path, patch, options).float(), expected):
                raise SystemExit(f"{setting} {name}: frames differ from fetch_video's")
            best = {"reference": math.inf, "ours": math.inf}
            for _ in range(repeats):
                for label, function in (("reference", reference), ("ours", ours)):
                    wait_for_idle(settle_s)
                    start = time.perf_counter()
                    function(path, patch, options)
                    best[label] = min(best[label], time.perf_counter() - start)
            timing = Timing(
                name,
                int(expected.shape[0]),
                (int(expected.shape[2]), int(expected.shape[3])),
                best["reference"],
                best["ours"],
                stage_times(path, patch, options, repeats),
            )
            timings[setting].append(timing)
            print(
                f"{setting:8} {name:22} {timing.frames:4} frames  fetch_video {timing.reference_s:6.3f} s  "
                f"ours {timing.ours_s:6.3f} s  {timing.ratio:.2f}x  {timing.stages}",
                file=sys.stderr,
            )
    return timings


def summary(timings: list[Timing]) -> dict[str, Any]:
    frames = sum(timing.frames for timing in timings)
    reference_s = sum(timing.reference_s for timing in timings)
    ours_s = sum(timing.ours_s for timing in timings)
    stages = {name: round(sum(timing.stages[name] for timing in timings), 3) for name in timings[0].stages}
    floor_s = (stages["floor_decode_cpu"] + stages["floor_resize_cpu"]) / usable_cores()
    return {
        "frames": frames,
        "reference_frames_per_s": round(frames / reference_s, 2),
        "ours_frames_per_s": round(frames / ours_s, 2),
        "ratio": round(reference_s / ours_s, 2),
        "stages_s": stages,
        "floor_s": round(floor_s, 3),
        "ratio_at_floor": round(reference_s / floor_s, 2),
        "clips": [
            {
                "clip": timing.clip,
                "frames": timing.frames,
                "resized": list(timing.resized),
                "reference_s": round(timing.reference_s, 4),
                "ours_s": round(timing.ours_s, 4),
                "ratio": round(timing.ratio, 2),
                "stages_s": timing.stages,
            }
            for timing in timings
        ],
    }


def write(timings: dict[str, list[Timing]], repeats: int) -> dict[str, Any]:
    import torch
    from qwen_vl_utils.vision_process import get_video_reader_backend

    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = cpu_model()
    summaries = {setting: summary(rows) for setting, rows in timings.items()}
    document = {
        "benchmark": "frame_sampling",
        "measured_on": machine,
        "cpu_threads": torch.get_num_threads(),
        "reference": f"qwen_vl_utils.fetch_video ({get_video_reader_backend()} reader)",
        "ours": "cookbook_data.video.sample_frames + cookbook_infer.vision.resize_frames",
        "repeats": repeats,
        "method": "per clip, best of the repeats, reference and ours alternating; throughput = frames sampled "
        "over all clips / summed seconds; ratio = ours / reference throughput; every clip's frames are "
        "torch.equal to the reference's before any timing. stages_s: the same work split into steps, "
        "each timed on its own (best of the repeats); floor_decode_cpu: CPU seconds of decoding each clip on "
        "one thread with every non-reference picture skipped and no conversion (less than exact frames need), "
        "floor_resize_cpu: CPU seconds of the bit-exact resize; floor_s: both spread over every usable core "
        "with nothing else, ratio_at_floor: the reference's time over floor_s (the most these cores allow).",
        "usable_cores": usable_cores(),
        "clips": [{**asdict(clip), "width": WIDTH, "height": HEIGHT, "codec": "h264"} for clip in CLIPS],
        "settings": {
            setting: {"image_patch_size": patch, "options": options} for setting, (patch, options) in SETTINGS.items()
        },
        "results": summaries,
    }
    (RESULTS / "frame_sampling.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        "# Frame sampling throughput",
        "",
        f"`sample_frames` + `resize_frames` against {document['reference']}, measured on {machine} "
        f"({document['cpu_threads']} threads) in the same run, {len(CLIPS)} 720p H.264 clips of 10-30 s "
        f"(best of {repeats} per clip). The frames are identical (`torch.equal`) to the reference's for every "
        "clip and setting.",
        "",
        "| setting | frames | fetch_video frames/s | ours frames/s | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for setting, row in summaries.items():
        lines.append(
            f"| {setting} | {row['frames']} | {row['reference_frames_per_s']} | {row['ours_frames_per_s']} "
            f"| {row['ratio']}x |"
        )
    lines += [
        "",
        "Where the time goes (seconds over all clips, each step timed on its own):",
        "",
        "| setting | decord open | get_batch | tensor + permute | resize | ours: sample_frames | resize_frames |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for setting, row in summaries.items():
        stages = row["stages_s"]
        lines.append(
            f"| {setting} | {stages['reference_open']} | {stages['reference_get_batch']} | "
            f"{stages['reference_tensor']} | {stages['reference_resize']} | {stages['ours_sample_frames']} | "
            f"{stages['ours_resize_frames']} |"
        )
    lines += [
        "",
        "The most these cores allow with exact frames: decoding each clip with every non-reference picture "
        "skipped and no conversion (CPU seconds, one thread), plus the bit-exact resize (CPU seconds), spread "
        f"over all {usable_cores()} usable cores with no overhead at all:",
        "",
        "| setting | decode floor, CPU s | resize, CPU s | floor, s | fetch_video, s | ratio at the floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for setting, row in summaries.items():
        stages = row["stages_s"]
        reference_s = sum(clip["reference_s"] for clip in row["clips"])
        lines.append(
            f"| {setting} | {stages['floor_decode_cpu']} | {stages['floor_resize_cpu']} | {row['floor_s']} "
            f"| {reference_s:.3f} | {row['ratio_at_floor']}x |"
        )
    lines += ["", "Per clip (seconds):", "", "| setting | clip | frames | resized | fetch_video | ours | ratio |"]
    lines.append("|---|---|---:|---|---:|---:|---:|")
    for setting, row in summaries.items():
        for clip in row["clips"]:
            height, width = clip["resized"]
            lines.append(
                f"| {setting} | {clip['clip']} | {clip['frames']} | {width}x{height} | {clip['reference_s']:.3f} "
                f"| {clip['ours_s']:.3f} | {clip['ratio']}x |"
            )
    (RESULTS / "frame_sampling.md").write_text("\n".join(lines) + "\n")
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each reader per clip")
    parser.add_argument(
        "--clips",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cookbook-bench-clips",
        help="folder caching the rendered clips",
    )
    parser.add_argument("--only", nargs="*", help="clip names to run (default: all)")
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="before each timed run, wait up to this many seconds for other processes to leave the CPUs idle",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    args = parser.parse_args()
    paths = clip_paths(args.clips)
    if args.only:
        paths = {name: path for name, path in paths.items() if name in args.only}
    timings = measure(paths, args.repeats, args.settle)
    summaries = {setting: summary(rows) for setting, rows in timings.items()}
    if not args.no_write:
        write(timings, args.repeats)
    for setting, row in summaries.items():
        print(
            f"{setting}: fetch_video {row['reference_frames_per_s']} frames/s, ours {row['ours_frames_per_s']} "
            f"frames/s, {row['ratio']}x"
        )


if __name__ == "__main__":
    main()

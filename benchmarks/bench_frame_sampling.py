"""Frame sampling throughput: ``sample_frames`` + ``resize_frames`` against ``qwen_vl_utils.fetch_video``.

Both read the same 720p H.264 clips with the Reason1 and Reason2 vision settings, in the same run,
alternating, and every clip's frames must be identical (``torch.equal``) before a time counts. The figures
are frames sampled per second (best of ``--repeats`` per clip, summed over clips) and their ratio.

    .venv/bin/python benchmarks/bench_frame_sampling.py [--repeats 3] [--clips DIR]

Clips are rendered once (a textured background panned like a moving camera, sensor-like grain and moving
objects, encoded with libx264) and cached in ``--clips`` (a folder under the system temp dir by default).
Results go to ``benchmarks/results/frame_sampling.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    coarse = rng.integers(0, 256, (HEIGHT // 16 + 8, WIDTH // 16 + 24, 3), dtype=np.uint8).astype(np.float32)
    texture = np.repeat(np.repeat(coarse, 16, 0), 16, 1)
    for axis in (0, 1):
        texture = (np.roll(texture, 4, axis) + np.roll(texture, -4, axis) + 2 * texture) / 4
    texture = np.clip(texture + rng.integers(-24, 24, texture.shape), 0, 255).astype(np.uint8)
    grain = rng.integers(0, 4, (8, HEIGHT, WIDTH, 1), dtype=np.uint8)
    span_x, span_y = texture.shape[1] - WIDTH, texture.shape[0] - HEIGHT
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream("libx264", rate=clip.fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        options = {"crf": "23", "preset": "veryfast"}
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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(paths: dict[str, Path], repeats: int) -> dict[str, Any]:
    import torch
    from qwen_vl_utils import fetch_video
    from qwen_vl_utils.vision_process import get_video_reader_backend

    from cookbook_data.video import VisionSettings, sample_frames
    from cookbook_infer.vision import resize_frames

    def reference(path: Path, patch: int, options: dict[str, Any]) -> torch.Tensor:
        video: torch.Tensor = fetch_video({"video": str(path), **options}, image_patch_size=patch)
        return video

    def ours(path: Path, patch: int, options: dict[str, Any]) -> torch.Tensor:
        sampled = sample_frames(path, VisionSettings(patch_factor=2 * patch, **options))  # type: ignore[arg-type]
        return resize_frames(sampled)

    results: dict[str, Any] = {}
    for setting, (patch, options) in SETTINGS.items():
        rows = []
        for name, path in paths.items():
            expected = reference(path, patch, options)  # also warms both paths up
            got = ours(path, patch, options)
            if not torch.equal(got.float(), expected):
                raise SystemExit(f"{setting} {name}: frames differ from fetch_video's")
            times: dict[str, list[float]] = {"reference": [], "ours": []}
            for _ in range(repeats):
                for label, function in (("reference", reference), ("ours", ours)):
                    start = time.perf_counter()
                    function(path, patch, options)
                    times[label].append(time.perf_counter() - start)
            best = {label: min(values) for label, values in times.items()}
            rows.append(
                {
                    "clip": name,
                    "frames": int(expected.shape[0]),
                    "resized": [int(expected.shape[2]), int(expected.shape[3])],
                    "reference_s": round(best["reference"], 4),
                    "ours_s": round(best["ours"], 4),
                    "ratio": round(best["reference"] / best["ours"], 2),
                    "identical": True,
                }
            )
            print(f"{setting:8} {name:22} {rows[-1]}", file=sys.stderr)
        frames = sum(row["frames"] for row in rows)
        reference_s = sum(row["reference_s"] for row in rows)
        ours_s = sum(row["ours_s"] for row in rows)
        results[setting] = {
            "image_patch_size": patch,
            "options": options,
            "frames": frames,
            "reference_frames_per_s": round(frames / reference_s, 2),
            "ours_frames_per_s": round(frames / ours_s, 2),
            "ratio": round(reference_s / ours_s, 2),
            "clips": rows,
        }
    results["reference_backend"] = get_video_reader_backend()
    return results


def write(results: dict[str, Any], repeats: int) -> None:
    import torch

    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = cpu_model()
    document = {
        "benchmark": "frame_sampling",
        "measured_on": machine,
        "cpu_threads": torch.get_num_threads(),
        "repeats": repeats,
        "method": "best of repeats per clip, reference and ours alternating; frames sampled per second over "
        "all clips; ratio = ours / reference throughput; every clip's frames torch.equal to the reference's",
        "clips": [{**asdict(clip), "width": WIDTH, "height": HEIGHT, "codec": "h264"} for clip in CLIPS],
        **results,
    }
    (RESULTS / "frame_sampling.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        "# Frame sampling throughput",
        "",
        f"`sample_frames` + `resize_frames` against `qwen_vl_utils.fetch_video` ({results['reference_backend']} "
        f"reader), measured on {machine} ({document['cpu_threads']} threads), {len(CLIPS)} 720p H.264 clips "
        f"of 10-30 s, best of {repeats}. Frames are identical to the reference's for every clip.",
        "",
        "| setting | frames | fetch_video (frames/s) | ours (frames/s) | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for setting in SETTINGS:
        row = results[setting]
        lines.append(
            f"| {setting} | {row['frames']} | {row['reference_frames_per_s']} | {row['ours_frames_per_s']} "
            f"| {row['ratio']}x |"
        )
    lines += [
        "",
        "Per clip (seconds, best of repeats):",
        "",
        "| setting | clip | frames | fetch_video | ours | ratio |",
    ]
    lines.append("|---|---|---:|---:|---:|---:|")
    for setting in SETTINGS:
        for row in results[setting]["clips"]:
            lines.append(
                f"| {setting} | {row['clip']} | {row['frames']} | {row['reference_s']:.3f} | {row['ours_s']:.3f} "
                f"| {row['ratio']}x |"
            )
    (RESULTS / "frame_sampling.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each reader per clip")
    parser.add_argument(
        "--clips",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cookbook-bench-clips",
        help="folder caching the rendered clips",
    )
    parser.add_argument("--only", nargs="*", help="clip names to run (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    args = parser.parse_args()
    paths = clip_paths(args.clips)
    if args.only:
        paths = {name: path for name, path in paths.items() if name in args.only}
    results = measure(paths, args.repeats)
    for setting in SETTINGS:
        row = results[setting]
        print(
            f"{setting}: fetch_video {row['reference_frames_per_s']} frames/s, ours {row['ours_frames_per_s']} "
            f"frames/s, {row['ratio']}x"
        )
    if not args.no_write:
        write(results, args.repeats)


if __name__ == "__main__":
    main()

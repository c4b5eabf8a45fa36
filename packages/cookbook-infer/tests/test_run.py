"""`cookbook-infer run`: every sample ends as a Prediction or an error, reruns resume, answers are parsed."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_data.records import read_records
from cookbook_data.schemas import Conversation, ItemError, Prediction, TextPart, UserMessage, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.backends.base import CandidateProbabilities, Generation, SamplingSettings
from cookbook_infer.backends.transformers import TransformersBackend
from cookbook_infer.registry import REASONING_SUFFIX
from cookbook_infer.run import Predictor, PreparedSample, RunConfig, run_inference
from cookbook_infer.testing import Arch
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints


def write_manifest(path: Path, samples: list[VideoSample]) -> Path:
    path.write_text("".join(s.model_dump_json() + "\n" for s in samples))
    return path


@pytest.fixture
def manifest(tmp_path: Path, synthetic_videos: VideoSet) -> Path:
    samples = [VideoSample(id=name, path=str(v.path), labels={"pc": 3}) for name, v in synthetic_videos.good.items()]
    samples.append(VideoSample(id="broken", path=str(synthetic_videos.broken["truncated"])))
    return write_manifest(tmp_path / "manifest.jsonl", samples)


@pytest.mark.parametrize("arch", ["reason1", "reason2"])
def test_a_run_answers_every_sample_and_records_failures(
    tiny_checkpoints: TinyCheckpoints, manifest: Path, tmp_path: Path, arch: Arch
) -> None:
    config = RunConfig(
        model=str(tiny_checkpoints(arch)), manifest=manifest, out=tmp_path / "out" / "p.jsonl", max_new_tokens=4
    )
    report = run_inference(config, progress=False)
    predictions = list(read_records(config.out, Prediction))
    errors = list(read_records(config.errors_path(), ItemError))
    assert sorted(p.sample_id for p in predictions) == sorted(
        s.id for s in read_records(manifest, VideoSample) if s.id != "broken"
    )
    assert [e.sample_id for e in errors] == ["broken"]
    assert errors[0].error_type == "VideoDecodeError"
    assert all(p.num_generated_tokens is not None and 1 <= p.num_generated_tokens <= 4 for p in predictions)
    prompt = "reason1_videophy2_critic" if arch == "reason1" else "reason2_videophy2_critic"
    assert all(p.task is not None and p.task.startswith(f"critic:{prompt}@") for p in predictions)
    assert (report.succeeded, report.failed) == (5, 1)

    resolved = json.loads((config.out.parent / RESOLVED_CONFIG).read_text())["config"]
    assert resolved["vision"]["fps"] == 4.0
    assert resolved["vision"]["patch_factor"] == (28 if arch == "reason1" else 32)
    assert resolved["sampling"]["max_new_tokens"] == 4
    if arch == "reason2":
        assert resolved["sampling"]["presence_penalty"] == 1.5  # the published non-reasoning preset


class Scripted:
    """A backend answering from a script, to check how run() reads answers; remembers what it was asked."""

    model_id = "scripted"

    def __init__(self, answers: dict[str, str], stop_after: int | None = None) -> None:
        self.answers = answers
        self.asked: list[Conversation] = []
        self.frames: list[Any] = []
        self.stop_after = stop_after

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingSettings, videos: Any = None
    ) -> list[Generation]:
        if self.stop_after is not None and len(self.asked) >= self.stop_after:
            raise KeyboardInterrupt
        self.asked.extend(conversations)
        self.frames.append(videos)
        out = []
        for conversation in conversations:
            user = conversation.messages[-1]
            assert isinstance(user, UserMessage)
            assert isinstance(user.content, list)
            video = user.content[0].video  # type: ignore[union-attr]
            out.append(Generation(text=self.answers[Path(video).stem], num_generated_tokens=3))
        return out

    def next_token_probabilities(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        prefixes: Sequence[str] | None = None,
        videos: Any = None,
    ) -> list[CandidateProbabilities]:
        raise NotImplementedError("a scripted backend has no token probabilities")


def test_answers_are_parsed_and_unparseable_ones_kept(
    tiny_checkpoints: TinyCheckpoints, manifest: Path, tmp_path: Path, synthetic_videos: VideoSet
) -> None:
    answers = {
        "h264_24fps": "<think>\nThe square & the <floor> agree.\n</think>\n\n<answer>\n4\n</answer>",
        "h264_30fps_long": "<answer>9</answer>",
        "h264_portrait_15fps": "<think>ran out of tok",
        "mpeg4_10fps": "The motion looks natural.\n2",
        "mpeg4_8fps": "",
    }
    good = [VideoSample(id=n, path=str(v.path)) for n, v in synthetic_videos.good.items()]
    config = RunConfig(
        model=str(tiny_checkpoints("reason1")),
        task="critic-thinking",
        manifest=write_manifest(tmp_path / "good.jsonl", good),
        out=tmp_path / "p.jsonl",
    )
    run_inference(config, backend=Scripted(answers), progress=False)
    found = {p.sample_id: p for p in read_records(config.out, Prediction)}
    assert (found["h264_24fps"].thinking, found["h264_24fps"].answer) == ("The square & the <floor> agree.", "4")
    assert found["h264_30fps_long"].answer is None  # out of range: rejected, not clamped
    assert found["h264_portrait_15fps"].answer is None
    assert found["h264_portrait_15fps"].raw_text == "<think>ran out of tok"
    assert found["mpeg4_10fps"].answer == "2"
    assert found["mpeg4_8fps"].answer is None
    assert len(found) == 5


def test_an_interrupted_run_resumes_without_duplicates(
    tiny_checkpoints: TinyCheckpoints, tmp_path: Path, synthetic_videos: VideoSet
) -> None:
    good = [VideoSample(id=n, path=str(v.path)) for n, v in synthetic_videos.good.items()]
    answers = dict.fromkeys(synthetic_videos.good, "<answer>3</answer>")
    config = RunConfig(
        model=str(tiny_checkpoints("reason1")),
        manifest=write_manifest(tmp_path / "m.jsonl", good),
        out=tmp_path / "p.jsonl",
        batch_size=2,
    )
    with pytest.raises(KeyboardInterrupt):
        run_inference(config, backend=Scripted(answers, stop_after=2), progress=False)
    assert len(list(read_records(config.out, Prediction))) == 2

    second = Scripted(answers)
    report = run_inference(config, backend=second, progress=False)
    assert len(second.asked) == 3
    assert report.skipped == 2
    ids = [p.sample_id for p in read_records(config.out, Prediction)]
    assert sorted(ids) == sorted(synthetic_videos.good)


def test_reasoning_tasks_ask_each_architecture_its_own_way(
    tiny_checkpoints: TinyCheckpoints, tmp_path: Path, synthetic_videos: VideoSet
) -> None:
    video = synthetic_videos.good["h264_24fps"]
    samples = [
        VideoSample(id="q", path=str(video.path), labels={"question": "Where does the square go?", "answer": "right"})
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", samples)
    asked: dict[str, str] = {}
    for arch, task in (("reason2", "critic-thinking"), ("reason1", "critic-thinking"), ("reason2", "vqa")):
        backend = Scripted({"h264_24fps": "x"})
        config = RunConfig(
            model=str(tiny_checkpoints(arch)),  # type: ignore[arg-type]
            task=task,
            manifest=manifest,
            out=tmp_path / f"{arch}-{task}.jsonl",
        )
        run_inference(config, backend=backend, progress=False)
        user = backend.asked[0].messages[-1]
        assert isinstance(user, UserMessage) and isinstance(user.content, list)
        text = user.content[-1]
        assert isinstance(text, TextPart)
        asked[f"{arch}-{task}"] = text.text
    assert asked["reason2-critic-thinking"].endswith("\n" + REASONING_SUFFIX["reason2"])
    assert REASONING_SUFFIX["reason1"] not in asked["reason1-critic-thinking"]  # the published template asks itself
    assert asked["reason2-vqa"] == "Where does the square go?\n"


@pytest.mark.parametrize(("task", "prompt"), [("vqa", "caption"), ("critic", "vqa"), ("adherence", "caption")])
def test_a_prompt_without_a_place_for_the_task_s_values_is_refused_at_start(
    tiny_checkpoints: TinyCheckpoints, tmp_path: Path, synthetic_videos: VideoSet, task: str, prompt: str
) -> None:
    video = synthetic_videos.good["h264_24fps"]
    sample = VideoSample(id="q", path=str(video.path), caption="A square.", labels={"question": "Where does it go?"})
    config = RunConfig(
        model=str(tiny_checkpoints("reason2")),
        task=task,
        prompt=prompt,
        manifest=write_manifest(tmp_path / "m.jsonl", [sample]),
        out=tmp_path / "out.jsonl",
    )

    with pytest.raises(ValueError, match=f"prompt {prompt}.*: task {task} needs the placeholders"):
        run_inference(config, backend=Scripted({"h264_24fps": "x"}), progress=False)
    assert not config.out.exists()


def test_videos_are_decoded_in_the_job_s_cpu_step_not_by_the_model_s_worker(
    tiny_checkpoints: TinyCheckpoints, tmp_path: Path, synthetic_videos: VideoSet
) -> None:
    good = [VideoSample(id=n, path=str(v.path)) for n, v in synthetic_videos.good.items()]
    config = RunConfig(
        model=str(tiny_checkpoints("reason2")),
        manifest=write_manifest(tmp_path / "m.jsonl", good),
        out=tmp_path / "p.jsonl",
        batch_size=2,
    )
    backend = Scripted(dict.fromkeys(synthetic_videos.good, "<answer>3</answer>"))
    run_inference(config, backend=backend, progress=False)
    assert len(backend.frames) == 3
    assert all(videos is not None for videos in backend.frames)  # frames arrived decoded and resized
    assert [len(videos) for videos in backend.frames] == [2, 2, 1]


@pytest.mark.parametrize("arch", ["reason1", "reason2"])
def test_a_prepared_sample_gets_the_answer_of_the_sample_itself(
    tiny_checkpoints: TinyCheckpoints, tmp_path: Path, synthetic_videos: VideoSet, arch: Arch
) -> None:
    config = RunConfig(
        model=str(tiny_checkpoints(arch)), manifest=tmp_path / "m.jsonl", out=tmp_path / "p.jsonl", max_new_tokens=6
    )
    predictor = Predictor.from_config(config, tmp_path)
    samples = [VideoSample(id=n, path=str(synthetic_videos.good[n].path)) for n in ("h264_24fps", "mpeg4_8fps")]
    prepared = predictor.prepare_batch(samples)
    assert [item.sample for item in prepared] == samples
    assert predictor.prepare_batch(prepared) == prepared  # preparing twice changes nothing
    for item in prepared:  # the native-resolution frames are let go, not kept alive by an empty view
        assert all(video.frames.size == 0 and video.frames.base is None for video, _ in item.videos)
    mixed: list[VideoSample | PreparedSample] = [prepared[0], samples[1]]
    expected = [(p.sample_id, p.raw_text) for p in predictor(samples)]
    assert [(p.sample_id, p.raw_text) for p in predictor(prepared)] == expected
    assert [(p.sample_id, p.raw_text) for p in predictor(mixed)] == expected


def test_seeded_sampling_gives_the_same_answers_with_several_workers(
    tiny_checkpoints: TinyCheckpoints, tmp_path: Path, synthetic_videos: VideoSet
) -> None:
    model = str(tiny_checkpoints("reason2"))
    samples = [VideoSample(id=name, path=str(video.path)) for name, video in synthetic_videos.good.items()]
    manifest = write_manifest(tmp_path / "m.jsonl", samples)
    backend = TransformersBackend(model)

    def answers(workers: int, run: str) -> dict[str, str]:
        config = RunConfig(
            model=model,
            manifest=manifest,
            out=tmp_path / run / "p.jsonl",
            temperature=1.0,
            top_p=1.0,
            max_new_tokens=8,
            nframes=2,
            batch_size=1,
            workers=workers,
        )
        run_inference(config, backend=backend, progress=False)
        return {p.sample_id: p.raw_text for p in read_records(config.out, Prediction)}

    alone = answers(1, "alone")
    assert len(set(alone.values())) > 1  # sampled, not greedy: the seed decides
    assert answers(3, "threads") == alone
    assert answers(3, "threads-again") == alone

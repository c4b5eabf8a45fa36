import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from cookbook_data.build import (
    BUILD_INFO,
    DROPPED,
    BuildConfig,
    BuildError,
    BuildReport,
    build_rl,
    build_sft,
    read_build_info,
    split_of,
)
from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_data.records import JsonlWriter, read_records
from cookbook_data.schemas import Conversation, ItemError, VideoPart, VideoSample
from cookbook_data.testing import SyntheticVideo, VideoSet
from cookbook_data.video import VisionSettings, probe, video_tokens

GRPO_FORMAT = re.compile(r"^<think>.*</think>\n\n<answer>.*</answer>$", re.DOTALL)
"""The published GRPO recipe's format reward."""
REASON1_BUDGET = 8192 * 28 * 28


def published(name: str) -> dict[str, str]:
    """A shipped prompt file read directly (not through PromptTemplate), to compare texts byte for byte."""
    data = resources.files("cookbook_data.prompts").joinpath(f"{name}.yaml").read_bytes()
    texts: dict[str, str] = yaml.safe_load(data)
    return texts


def write_manifest(path: Path, samples: list[dict[str, Any]]) -> Path:
    with JsonlWriter(path, VideoSample) as writer:
        writer.write_all(VideoSample.model_validate(sample) for sample in samples)
    return path


def load(out: Path) -> dict[str, list[dict[str, str]]]:
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(out))
    assert isinstance(data, DatasetDict)
    assert set(data) == {"train", "val"}
    return {name: [dict(row) for row in data[name]] for name in data}


def messages(row: dict[str, str]) -> list[dict[str, Any]]:
    """The row's conversation, checked to parse as a Conversation and to round-trip unchanged."""
    parsed = Conversation.from_messages_json(row["conversations"])
    as_list: list[dict[str, Any]] = json.loads(row["conversations"])
    assert parsed.to_messages() == as_list
    return as_list


def video_part(path: Path, **settings: Any) -> dict[str, Any]:
    part = {"type": "video", "video": str(path), "fps": 4.0, "min_frames": 4, "max_frames": 768}
    part["total_pixels"] = REASON1_BUDGET
    part.update(settings)
    return part


def dropped_lines(out: Path) -> dict[str, ItemError]:
    return {item.sample_id: item for item in read_records(out / DROPPED, ItemError)}


@pytest.fixture
def five(synthetic_videos: VideoSet) -> list[Path]:
    return [video.path for video in synthetic_videos.good.values()]


def critic_samples(paths: list[Path], scores: list[Any]) -> list[dict[str, Any]]:
    return [
        {"id": f"v{index}", "path": str(path), "labels": {"pc": score, "sa": 3}}
        for index, (path, score) in enumerate(zip(paths, scores, strict=True))
    ]


def test_reason1_critic_sft_rows_are_the_cosmos_rl_contract(tmp_path: Path, five: list[Path]) -> None:
    manifest = write_manifest(tmp_path / "manifest.jsonl", critic_samples(five, [1, 2, 3, 4, 5]))
    out = tmp_path / "sft"
    report = build_sft(BuildConfig(manifest=manifest, out=out, val_fraction=0))

    assert sorted(p.name for p in out.iterdir()) == sorted(
        [BUILD_INFO, DROPPED, RESOLVED_CONFIG, "dataset_dict.json", "train", "val"]
    )
    assert not list(tmp_path.glob(".*partial"))
    rows = load(out)
    assert rows["val"] == []
    assert sorted(row["id"] for row in rows["train"]) == [f"v{i}" for i in range(5)]
    texts = published("reason1_videophy2_critic")
    by_id = {row["id"]: row for row in rows["train"]}
    for index, path in enumerate(five):
        row = by_id[f"v{index}"]
        assert row["reference"] == str(index + 1)
        assert messages(row) == [
            {"role": "system", "content": texts["system_prompt"]},
            {
                "role": "user",
                "content": [
                    video_part(path),
                    {"type": "text", "text": "Does this video adhere to the physical laws?\n"},
                ],
            },
            {"role": "assistant", "content": f"<answer>\n{index + 1}\n</answer>"},
        ]
        assert Path(messages(row)[1]["content"][0]["video"]).is_absolute()

    assert report.kind == "sft"
    assert report.target_format == "answer_tag"
    assert report.prompt.startswith("reason1_videophy2_critic@")
    assert report.rows == {"train": 5, "val": 0}
    assert report.dropped == {}
    assert report.train_labels_after == {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1}
    # Evaluation reads the settings back, and they are exactly those in every video part.
    info = read_build_info(out)
    assert info == report
    assert report.max_video_tokens == max(video_tokens(info.vision, probe(path)) for path in five)
    assert info.vision == VisionSettings(fps=4.0, total_pixels=REASON1_BUDGET, patch_factor=28)
    part = VideoPart.model_validate(messages(rows["train"][0])[1]["content"][0])
    assert VisionSettings.from_video_part(part, patch_factor=info.vision.patch_factor) == info.vision
    resolved = json.loads((out / RESOLVED_CONFIG).read_text())["config"]
    assert resolved["fps"] == 4.0
    assert resolved["total_pixels"] == REASON1_BUDGET
    assert resolved["patch_factor"] == 28
    assert resolved["prompt"] == "reason1_videophy2_critic"
    assert resolved["target_format"] == "answer_tag"
    assert list(read_records(out / DROPPED, ItemError)) == []


def test_reason2_critic_target_is_the_bare_digit(tmp_path: Path, five: list[Path]) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", critic_samples(five[:1], [3]))
    out = tmp_path / "out"
    report = build_sft(
        BuildConfig(
            manifest=manifest, out=out, prompt="reason2_videophy2_critic", val_fraction=0, fps=16, max_pixels=163840
        )
    )
    [row] = load(out)["train"]
    texts = published("reason2_videophy2_critic")
    expected_part = video_part(five[0], fps=16.0, max_pixels=163840)
    del expected_part["total_pixels"]  # Reason2 inference sets no budget of its own; neither does its build
    assert messages(row) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": [
                expected_part,
                {"type": "text", "text": texts["user_prompt"]},
            ],
        },
        {"role": "assistant", "content": "3"},
    ]
    assert report.target_format == "plain"
    assert report.vision.patch_factor == 32


def test_a_build_s_pixel_budget_follows_the_model_family_unless_given(tmp_path: Path) -> None:
    base = {"manifest": tmp_path / "m.jsonl", "out": tmp_path / "out"}
    assert BuildConfig(**base).vision_settings().total_pixels == REASON1_BUDGET
    assert BuildConfig(**base, prompt="reason2_videophy2_critic").vision_settings().total_pixels is None
    assert BuildConfig(**base, patch_factor=32).vision_settings().total_pixels is None
    assert BuildConfig(**base, patch_factor=32, total_pixels=REASON1_BUDGET).vision_settings().total_pixels == (
        REASON1_BUDGET
    )


def test_a_build_with_a_template_file_is_told_the_model_s_patch_factor(tmp_path: Path, five: list[Path]) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", critic_samples(five[:1], [4]))
    texts = published("reason2_videophy2_critic")
    for name in ("mine.yaml", "reason2_mine.yaml"):  # a file's name says nothing of the model it is for
        (tmp_path / name).write_text(yaml.safe_dump(texts))
        with pytest.raises(ValidationError, match=f"prompt {tmp_path / name} is a template file, which names no model"):
            BuildConfig(manifest=manifest, out=tmp_path / "out", prompt=str(tmp_path / name))
    assert not (tmp_path / "out").exists()

    config = BuildConfig(manifest=manifest, out=tmp_path / "out", prompt=str(tmp_path / "mine.yaml"), patch_factor=32)
    report = build_rl(config.model_copy(update={"val_fraction": 0}))
    assert (
        report.vision
        == BuildConfig(manifest=manifest, out=tmp_path, prompt="reason2_videophy2_critic").vision_settings()
    )
    assert report.vision.patch_factor == 32


def test_rl_rows_have_no_assistant_turn_and_carry_the_reference(tmp_path: Path, five: list[Path]) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", critic_samples(five, [4, 4, 2, 5, 1]))
    out = tmp_path / "rl"
    report = build_rl(BuildConfig(manifest=manifest, out=out, val_fraction=0))
    rows = load(out)["train"]
    assert report.kind == "rl"
    assert {row["id"]: row["reference"] for row in rows} == {"v0": "4", "v1": "4", "v2": "2", "v3": "5", "v4": "1"}
    for row in rows:
        roles = [message["role"] for message in messages(row)]
        assert roles == ["system", "user"]


def test_thinking_prompt_sft_needs_the_samples_own_reasoning(tmp_path: Path, five: list[Path]) -> None:
    samples = critic_samples(five[:3], [2, 4, 5])
    samples[0]["labels"]["reasoning"] = "The ball hovers before falling."
    manifest = write_manifest(tmp_path / "m.jsonl", samples)
    config = BuildConfig(
        manifest=manifest, out=tmp_path / "sft", prompt="reason1_videophy2_critic_thinking", val_fraction=0
    )
    report = build_sft(config)
    [row] = load(config.out)["train"]
    target = messages(row)[-1]["content"]
    assert target == "<think>\nThe ball hovers before falling.\n</think>\n\n<answer>\n2\n</answer>"
    assert GRPO_FORMAT.match(target)
    assert messages(row)[0]["content"] == published("reason1_videophy2_critic_thinking")["system_prompt"]
    assert report.target_format == "think_and_answer_tag"
    assert report.dropped == {"missing_reasoning": 2}
    assert {k: v.error_type for k, v in dropped_lines(config.out).items()} == {
        "v1": "missing_reasoning",
        "v2": "missing_reasoning",
    }

    # RL needs only the reference: every sample goes in.
    rl = build_rl(config.model_copy(update={"out": tmp_path / "rl"}))
    assert rl.rows == {"train": 3, "val": 0}
    assert rl.dropped == {}

    # Without any reasoning there is no SFT dataset, and no half-written folder.
    bare = write_manifest(tmp_path / "bare.jsonl", critic_samples(five[:2], [2, 4]))
    empty = config.model_copy(update={"manifest": bare, "out": tmp_path / "none"})
    with pytest.raises(BuildError, match=r"no sample reached the train split \(2 missing_reasoning\)"):
        build_sft(empty)
    assert not (tmp_path / "none").exists()
    assert not list(tmp_path.glob(".*partial"))

    # The one sample that could be used hashed into val: the error says so.
    all_val = config.model_copy(update={"out": tmp_path / "all-val", "val_fraction": 0.999})
    with pytest.raises(BuildError, match=r"train split \(2 missing_reasoning, 1 hashed into val \(val_fraction"):
        build_sft(all_val)


def test_caption_vqa_and_multiple_choice_rows(tmp_path: Path, five: list[Path]) -> None:
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [
            {
                "id": "a",
                "path": str(five[0]),
                "caption": "  A white square drifts across a grey field. ",
                "labels": {
                    "question": "Which way does the square move?",
                    "answer": "Down and to the right.",
                    "options": ["Left", "Down and to the right", "It stays still"],
                },
            },
            {
                "id": "b",
                "path": str(five[1]),
                "caption": "A square moves.",
                "labels": {"question": "How many squares {are} there?", "answer": 1, "options": ["One", "Two"]},
            },
        ],
    )
    caption = build_sft(BuildConfig(manifest=manifest, out=tmp_path / "caption", task="caption", val_fraction=0))
    rows = {row["id"]: messages(row) for row in load(tmp_path / "caption")["train"]}
    assert caption.target_format == "plain"
    assert rows["a"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert rows["a"][1]["content"][1] == {"type": "text", "text": "Describe this video in detail.\n"}
    assert rows["a"][2] == {"role": "assistant", "content": "A white square drifts across a grey field."}

    build_sft(BuildConfig(manifest=manifest, out=tmp_path / "vqa", task="vqa", val_fraction=0))
    loaded = {row["id"]: row for row in load(tmp_path / "vqa")["train"]}
    assert messages(loaded["a"])[1]["content"] == [
        video_part(five[0]),
        {"type": "text", "text": "Which way does the square move?\n"},
    ]
    assert messages(loaded["a"])[2]["content"] == "Down and to the right."
    # Braces inside a value are kept as they are, never read as placeholders.
    assert messages(loaded["b"])[1]["content"][1]["text"] == "How many squares {are} there?\n"
    assert loaded["b"]["reference"] == "1"


def test_answers_and_scores_a_labels_file_kept_as_text_or_parsed_are_read(tmp_path: Path, five: list[Path]) -> None:
    labels = [{"question": "Q?", "answer": "1.50", "pc": "4.0"}, {"question": "Q?", "answer": True, "pc": 2}]
    samples = [{"id": f"s{i}", "path": str(five[i]), "labels": label} for i, label in enumerate(labels)]
    manifest = write_manifest(tmp_path / "m.jsonl", samples)

    build_rl(BuildConfig(manifest=manifest, out=tmp_path / "vqa", task="vqa", val_fraction=0))
    build_rl(BuildConfig(manifest=manifest, out=tmp_path / "critic", label_field="pc", val_fraction=0))

    assert {row["id"]: row["reference"] for row in load(tmp_path / "vqa")["train"]} == {"s0": "1.50", "s1": "true"}
    assert {row["id"]: row["reference"] for row in load(tmp_path / "critic")["train"]} == {"s0": "4", "s1": "2"}

    letters = write_manifest(
        tmp_path / "mc.jsonl",
        [
            {
                "id": "a",
                "path": str(five[0]),
                "labels": {"question": "Which way?", "options": ["Left", "Right"], "answer": "B"},
            },
            {
                "id": "b",
                "path": str(five[1]),
                "labels": {"question": "Colour?", "options": ["White", "Red"], "answer": "a"},
            },
            {"id": "c", "path": str(five[2]), "labels": {"question": "Q?", "options": ["x", "y"], "answer": "C"}},
            {"id": "d", "path": str(five[3]), "labels": {"question": "Q?", "options": "x or y", "answer": "A"}},
        ],
    )
    mc = build_rl(BuildConfig(manifest=letters, out=tmp_path / "mc", task="multiple_choice", val_fraction=0))
    loaded = {row["id"]: row for row in load(tmp_path / "mc")["train"]}
    assert messages(loaded["a"])[1]["content"][1]["text"] == (
        "Which way?\nA. Left\nB. Right\nAnswer with the option's letter from the given choices directly.\n"
    )
    assert (loaded["a"]["reference"], loaded["b"]["reference"]) == ("B", "A")
    assert mc.dropped == {"bad_label": 2}
    drops = dropped_lines(tmp_path / "mc")
    assert "letters AB, got 'C'" in drops["c"].message
    assert "labels.options" in drops["d"].message
    assert mc.train_labels_after == {"A": 1, "B": 1}


def test_a_missing_video_with_a_url_is_dropped_with_the_way_to_fetch_it_again(tmp_path: Path, five: list[Path]) -> None:
    samples: list[dict[str, Any]] = [
        {"id": "ok", "path": str(five[0]), "labels": {"pc": 4}},
        {
            "id": "cached",
            "path": str(tmp_path / "videos" / "cleaned.mp4"),
            "url": "https://example.com/a.mp4",
            "labels": {"pc": 3},
        },
        {"id": "local", "path": str(tmp_path / "gone.mp4"), "labels": {"pc": 3}},
    ]
    out = tmp_path / "out"
    report = build_sft(BuildConfig(manifest=write_manifest(tmp_path / "m.jsonl", samples), out=out, val_fraction=0))
    assert report.dropped == {"missing_file": 2}
    drops = dropped_lines(out)
    assert "cleaned.mp4: no such file" in drops["cached"].message
    assert "https://example.com/a.mp4" in drops["cached"].message
    assert "cookbook-data ingest videophy2 --download" in drops["cached"].message
    assert drops["local"].message == f"{tmp_path / 'gone.mp4'}: no such file"  # nothing to fetch it from


def test_bad_labels_and_files_are_reported_not_crashed(
    tmp_path: Path, five: list[Path], synthetic_videos: VideoSet
) -> None:
    good = five[0]
    samples: list[dict[str, Any]] = [
        {"id": "ok", "path": str(good), "labels": {"pc": 4}},
        {"id": "float_ok", "path": str(five[1]), "labels": {"pc": 5.0}},
        {"id": "word", "path": str(good), "labels": {"pc": "four"}},
        {"id": "high", "path": str(good), "labels": {"pc": 7}},
        {"id": "half", "path": str(good), "labels": {"pc": 3.5}},
        {"id": "bool", "path": str(good), "labels": {"pc": True}},
        {"id": "none", "path": str(good), "labels": {"pc": None}},
        {"id": "absent", "path": str(good), "labels": {"sa": 3}},
        {"id": "url_only", "url": "https://example.com/clip.mp4", "labels": {"pc": 3}},
        {"id": "gone", "path": str(tmp_path / "gone.mp4"), "labels": {"pc": 3}},
        {"id": "text", "path": str(synthetic_videos.broken["not_a_video"]), "labels": {"pc": 3}},
        {"id": "empty", "path": str(synthetic_videos.broken["empty"]), "labels": {"pc": 3}},
        {"id": "ok", "path": str(good), "labels": {"pc": 4}},
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", samples)
    out = tmp_path / "out"
    report = build_sft(BuildConfig(manifest=manifest, out=out, val_fraction=0))
    assert report.total == 13
    assert report.dropped == {
        "duplicate_id": 1,
        "missing_label": 2,
        "bad_label": 4,
        "missing_file": 2,
        "bad_video": 2,
    }
    assert sum(report.rows.values()) + report.dropped_total == report.total
    drops = dropped_lines(out)
    assert {key: item.error_type for key, item in drops.items()} == {
        "word": "bad_label",
        "high": "bad_label",
        "half": "bad_label",
        "bool": "bad_label",
        "none": "missing_label",
        "absent": "missing_label",
        "url_only": "missing_file",
        "gone": "missing_file",
        "text": "bad_video",
        "empty": "bad_video",
        "ok": "duplicate_id",
    }
    assert all(item.stage == "build-sft" for item in drops.values())
    assert "labels.pc: expected an integer score from 1 to 5, got 'four'" in drops["word"].message
    assert "gone.mp4: no such file" in drops["gone"].message
    assert "not_a_video.mp4" in drops["text"].message
    assert {row["id"]: row["reference"] for row in load(out)["train"]} == {"ok": "4", "float_ok": "5"}

    # A video too short for the settings would fail in training: it is dropped here instead.
    short = build_sft(BuildConfig(manifest=manifest, out=tmp_path / "short", val_fraction=0, nframes=50))
    assert short.dropped["bad_video"] == 3
    assert "cannot sample 50 frames from a video of 48 frames" in dropped_lines(tmp_path / "short")["ok"].message
    assert short.rows == {"train": 1, "val": 0}


def test_a_video_cut_short_after_its_header_is_dropped_not_built(
    tmp_path: Path, five: list[Path], faststart_videos: tuple[SyntheticVideo, Path]
) -> None:
    whole, cut = faststart_videos
    samples = critic_samples([whole.path, cut, five[0]], [3, 4, 5])
    manifest = write_manifest(tmp_path / "m.jsonl", samples)
    report = build_rl(BuildConfig(manifest=manifest, out=tmp_path / "out", val_fraction=0))
    assert report.dropped == {"bad_video": 1}
    [drop] = dropped_lines(tmp_path / "out").values()
    assert drop.message.startswith(f"{cut}: cut short: ")
    assert sorted(row["reference"] for row in load(tmp_path / "out")["train"]) == ["3", "5"]


def test_relative_paths_are_resolved_against_the_manifest(tmp_path: Path, five: list[Path]) -> None:
    folder = tmp_path / "data"
    (folder / "clips").mkdir(parents=True)
    shutil.copy(five[0], folder / "clips" / "one.mp4")
    manifest = write_manifest(folder / "m.jsonl", [{"id": "x", "path": "clips/one.mp4", "labels": {"pc": 2}}])
    build_rl(BuildConfig(manifest=manifest, out=tmp_path / "out", val_fraction=0))
    [row] = load(tmp_path / "out")["train"]
    assert messages(row)[1]["content"][0]["video"] == str(folder / "clips" / "one.mp4")


def test_records_sharing_an_id_give_the_same_dataset_in_any_order(tmp_path: Path, five: list[Path]) -> None:
    samples = critic_samples(five[:3], [4, 3, 2])
    samples += [dict(samples[0]), {**samples[1], "labels": {"pc": 5}}]  # v0 again, and v1 with another label
    built = {}
    for name, order in (("forward", samples), ("reversed", samples[::-1])):
        manifest = write_manifest(tmp_path / f"{name}.jsonl", order)
        report = build_sft(BuildConfig(manifest=manifest, out=tmp_path / name, val_fraction=0))
        assert report.dropped == {"duplicate_id": 1, "conflicting_id": 2}
        drops = sorted(
            (item.sample_id, item.error_type, item.message)
            for item in read_records(tmp_path / name / DROPPED, ItemError)
        )
        built[name] = (sorted((row["id"], row["reference"]) for row in load(tmp_path / name)["train"]), drops)
    assert built["forward"] == built["reversed"]
    rows, drops = built["forward"]
    assert rows == [("v0", "4"), ("v2", "2")]
    assert [(key, kind) for key, kind, _ in drops] == [
        ("v0", "duplicate_id"),
        ("v1", "conflicting_id"),
        ("v1", "conflicting_id"),
    ]
    assert drops[1][2] == (
        "id 'v1' is held by 2 records of the manifest that differ in labels; none is used, as which is right cannot "
        "be told: keep one"
    )


def test_identical_video_bytes_keep_the_smallest_id_in_any_order(tmp_path: Path, five: list[Path]) -> None:
    copy = tmp_path / "copy_of_first.mp4"
    shutil.copy(five[0], copy)
    samples = critic_samples([five[0], five[1], copy], [4, 3, 2])
    manifest = write_manifest(tmp_path / "m.jsonl", samples)
    report = build_sft(BuildConfig(manifest=manifest, out=tmp_path / "out", val_fraction=0))
    assert report.duplicates == {"v2": "v0"}
    assert report.dropped == {"duplicate_content": 1}
    line = dropped_lines(tmp_path / "out")["v2"]
    assert line.error_type == "duplicate_content"
    assert "copy_of_first.mp4" in line.message
    assert "'v0'" in line.message
    assert sorted(row["id"] for row in load(tmp_path / "out")["train"]) == ["v0", "v1"]

    # Rows come in any order (validation on Ray writes them as they finish): the same one is kept.
    reversed_manifest = write_manifest(tmp_path / "r.jsonl", samples[::-1])
    again = build_sft(BuildConfig(manifest=reversed_manifest, out=tmp_path / "reversed", val_fraction=0))
    assert again.duplicates == {"v2": "v0"}
    assert sorted(load(tmp_path / "reversed")["train"], key=lambda row: row["id"]) == sorted(
        load(tmp_path / "out")["train"], key=lambda row: row["id"]
    )

    kept_all = build_sft(BuildConfig(manifest=manifest, out=tmp_path / "all", val_fraction=0, dedup=False))
    assert kept_all.rows["train"] == 3
    assert kept_all.duplicates == {}


def skewed_manifest(path: Path, videos: list[Path], order: slice = slice(None)) -> Path:
    """Eleven samples (distinct ids, shared files): six 4s, two 2s and three 5s."""
    scores = [4, 4, 2, 4, 5, 4, 5, 2, 4, 5, 4]
    samples = [
        {"id": f"s{index:02d}", "path": str(videos[index % len(videos)]), "labels": {"pc": score}}
        for index, score in enumerate(scores)
    ]
    return write_manifest(path, samples[order])


def train_ids(out: Path) -> list[str]:
    return [row["id"] for row in load(out)["train"]]


def test_down_sampling_is_seeded_reproducible_and_reported(tmp_path: Path, five: list[Path]) -> None:
    manifest = skewed_manifest(tmp_path / "m.jsonl", five)
    config = BuildConfig(manifest=manifest, out=tmp_path / "a", balance="down", val_fraction=0, dedup=False, seed=7)
    report = build_sft(config)
    assert report.train_labels_before == {"2": 2, "4": 6, "5": 3}
    assert report.train_labels_after == {"2": 2, "4": 2, "5": 2}
    assert report.dropped == {"downsampled": 5}
    rows = load(config.out)["train"]
    assert Counter(row["reference"] for row in rows) == {"2": 2, "4": 2, "5": 2}
    drops = dropped_lines(config.out)
    assert {item.error_type for item in drops.values()} == {"downsampled"}
    assert set(drops) | {row["id"] for row in rows} == {f"s{i:02d}" for i in range(11)}

    # Same seed, manifest reversed: the same samples survive, in the same order.
    reversed_manifest = skewed_manifest(tmp_path / "r.jsonl", five, slice(None, None, -1))
    again = config.model_copy(update={"manifest": reversed_manifest, "out": tmp_path / "b"})
    build_sft(again)
    assert train_ids(tmp_path / "b") == train_ids(config.out)

    # Other seeds choose other samples.
    choices = set()
    for seed in range(6):
        other = config.model_copy(update={"seed": seed, "out": tmp_path / f"seed{seed}"})
        build_sft(other)
        choices.add(frozenset(train_ids(other.out)))
    assert len(choices) > 1


def test_up_sampling_repeats_the_smaller_classes(tmp_path: Path, five: list[Path]) -> None:
    manifest = skewed_manifest(tmp_path / "m.jsonl", five)
    config = BuildConfig(manifest=manifest, out=tmp_path / "up", balance="up", val_fraction=0, dedup=False, seed=3)
    report = build_rl(config)
    assert report.train_labels_after == {"2": 6, "4": 6, "5": 6}
    assert report.rows["train"] == 18
    assert report.dropped == {}
    rows = load(config.out)["train"]
    copies = Counter(row["id"] for row in rows)
    by_label: dict[str, list[int]] = {}
    for row in rows:
        by_label.setdefault(row["reference"], []).append(copies[row["id"]])
    assert set(by_label["4"]) == {1}
    assert set(by_label["2"]) == {3}  # 2 samples x 3 = 6
    assert set(by_label["5"]) == {2}  # 3 samples x 2 = 6
    build_rl(config.model_copy(update={"out": tmp_path / "again"}))
    assert train_ids(tmp_path / "again") == [row["id"] for row in rows]
    unshuffled = build_rl(config.model_copy(update={"out": tmp_path / "ordered", "shuffle": False}))
    assert unshuffled.rows == report.rows
    ordered = train_ids(tmp_path / "ordered")
    assert list(dict.fromkeys(ordered)) == [f"s{i:02d}" for i in range(11)]


@pytest.mark.parametrize("seed", [0, 1])
def test_down_sampled_classes_are_spread_through_the_shuffle(seed: int) -> None:
    from cookbook_data._balance import balance, shuffled

    items = [(f"s{i}", "4") for i in range(1000)] + [(f"t{i}", "1") for i in range(100)]
    items += [(f"u{i}", "2") for i in range(300)]
    kept, _ = balance(items, lambda item: item[1], lambda item: item[0], "down", seed)
    order = shuffled(kept, lambda item: item[0], seed)
    quarter = len(order) // 4
    for start in range(0, len(order), quarter):
        counts = Counter(label for _, label in order[start : start + quarter])
        for label in ("1", "2", "4"):  # 25 of each expected; a class-ordered split would have 0 or 75
            assert abs(counts[label] - quarter / 3) <= 12, (start, counts)


def test_balancing_leaves_val_alone(tmp_path: Path, five: list[Path]) -> None:
    manifest = skewed_manifest(tmp_path / "m.jsonl", five)
    report = build_sft(BuildConfig(manifest=manifest, out=tmp_path / "o", balance="up", val_fraction=0.4, dedup=False))
    val = load(tmp_path / "o")["val"]
    assert report.rows["val"] == len(val) > 0
    assert len({row["id"] for row in val}) == len(val)
    assert report.val_labels == dict(sorted(Counter(row["reference"] for row in val).items()))


def test_split_is_a_stable_hash_of_the_id(tmp_path: Path, five: list[Path]) -> None:
    samples = [
        {"id": f"clip-{index:03d}", "path": str(five[index % 5]), "labels": {"pc": 1 + index % 5}}
        for index in range(40)
    ]
    first = write_manifest(tmp_path / "first.jsonl", samples)
    base = BuildConfig(manifest=first, out=tmp_path / "first", val_fraction=0.3, dedup=False)
    build_sft(base)
    rows = load(base.out)
    split = {row["id"]: name for name, part in rows.items() for row in part}
    assert 0 < sum(name == "val" for name in split.values()) < 40
    assert all(split[key] == split_of(key, 0.3) for key in split)

    extra = [{"id": f"new-{index}", "path": str(five[0]), "labels": {"pc": 3}} for index in range(10)]
    second = write_manifest(tmp_path / "second.jsonl", [*extra, *samples[::-1]])
    build_sft(base.model_copy(update={"manifest": second, "out": tmp_path / "second"}))
    later = {row["id"]: name for name, part in load(tmp_path / "second").items() for row in part}
    assert {key: later[key] for key in split} == split

    salted = build_sft(base.model_copy(update={"out": tmp_path / "salted", "split_salt": "fold-2"}))
    other = {row["id"]: name for name, part in load(tmp_path / "salted").items() for row in part}
    assert other != split
    assert salted.rows["train"] + salted.rows["val"] == 40
    # The function itself: fixed values, so a change of hash would show.
    assert [split_of(f"clip-{i:03d}", 0.3) for i in range(5)] == [split[f"clip-{i:03d}"] for i in range(5)]
    assert split_of("anything", 0.0) == "train"


def test_output_folder_is_not_replaced_by_accident(tmp_path: Path, five: list[Path]) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", critic_samples(five[:2], [4, 2]))
    config = BuildConfig(manifest=manifest, out=tmp_path / "out", val_fraction=0)
    build_sft(config)
    with pytest.raises(FileExistsError, match="overwrite"):
        build_sft(config)
    report = build_rl(config.model_copy(update={"overwrite": True}))
    assert read_build_info(config.out).kind == report.kind == "rl"
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        build_sft(config.model_copy(update={"out": precious, "overwrite": True}))
    assert (precious / "notes.txt").read_text() == "keep me"


def test_config_is_strict_and_checked(tmp_path: Path, five: list[Path]) -> None:
    manifest = tmp_path / "m.jsonl"
    with pytest.raises(ValidationError, match="extra"):
        BuildConfig.model_validate({"manifest": manifest, "out": tmp_path, "label": "pc"})
    with pytest.raises(ValidationError, match="task caption has none"):
        BuildConfig(manifest=manifest, out=tmp_path, task="caption", balance="up")
    with pytest.raises(ValidationError, match="not fps and nframes"):
        BuildConfig(manifest=manifest, out=tmp_path, fps=2, nframes=8)
    with pytest.raises(ValidationError, match="val_fraction"):
        BuildConfig(manifest=manifest, out=tmp_path, val_fraction=1.0)
    assert BuildConfig(manifest=manifest, out=tmp_path, nframes=8).vision_settings().fps is None
    for name, field in BuildConfig.model_fields.items():
        assert field.description, name

    write_manifest(manifest, [{"id": "q", "path": str(five[0]), "labels": {"question": "Why?", "answer": "So."}}])
    with pytest.raises(ValueError, match=r"task vqa needs the placeholders \{question\}, the template has none"):
        build_sft(BuildConfig(manifest=manifest, out=tmp_path / "x", task="vqa", prompt="reason1_videophy2_critic"))
    assert not (tmp_path / "x").exists()

    mine = tmp_path / "ask.yaml"
    mine.write_text('user_prompt: |\n  Answer in one word. {question}\n  Reply as JSON like {"a": 1}.\n')
    report = build_sft(
        BuildConfig(
            manifest=manifest, out=tmp_path / "mine", task="vqa", prompt=str(mine), patch_factor=28, val_fraction=0
        )
    )
    [row] = load(tmp_path / "mine")["train"]
    assert messages(row) == [
        {
            "role": "user",
            "content": [
                video_part(five[0]),
                {"type": "text", "text": 'Answer in one word. Why?\nReply as JSON like {"a": 1}.\n'},
            ],
        },
        {"role": "assistant", "content": "So."},
    ]
    assert report.prompt.startswith("ask@")


def test_the_reward_models_strided_frames_are_recorded_instead_of_fps(tmp_path: Path, five: list[Path]) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", critic_samples(five[:1], [4]))
    config = BuildConfig(manifest=manifest, out=tmp_path / "rl", max_strided_frames=160, val_fraction=0)
    report = build_rl(config)

    [row] = load(tmp_path / "rl")["train"]
    [part] = [part for part in messages(row)[-1]["content"] if part["type"] == "video"]
    expected = video_part(five[0], max_strided_frames=160)
    del expected["fps"]
    assert part == expected
    assert report.vision == VisionSettings(max_strided_frames=160, total_pixels=REASON1_BUDGET)
    assert VisionSettings.from_video_part(VideoPart.model_validate(part), 28) == report.vision
    with pytest.raises(ValidationError, match="not fps and max_strided_frames"):
        BuildConfig(manifest=manifest, out=tmp_path / "x", fps=2, max_strided_frames=160)


def test_report_round_trips_and_reads_as_a_summary(tmp_path: Path, five: list[Path]) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", critic_samples(five[:2], [4, 9]))
    report = build_sft(BuildConfig(manifest=manifest, out=tmp_path / "out", val_fraction=0))
    assert BuildReport.model_validate_json(report.model_dump_json()) == report
    assert "1 train / 0 val rows from 2 samples; dropped: 1 bad_label" in report.summary()


def test_importing_the_module_does_not_import_datasets() -> None:
    code = "import sys, cookbook_data.build; assert 'datasets' not in sys.modules, 'datasets imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

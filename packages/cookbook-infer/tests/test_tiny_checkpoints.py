"""The tiny checkpoints load like hub checkpoints and generate from real encoded videos."""

from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from cookbook_data.testing import VideoSet
from cookbook_infer.backends.transformers import load_pretrained
from cookbook_infer.testing import REASONING_TOKENS, SPECIAL_TOKENS, Arch
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints

ARCHS: list[Arch] = ["reason1", "reason2"]
EXPECTED = {
    "reason1": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", 28),
    "reason2": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", 32),
}


def frames_and_metadata(path: Path, count: int) -> tuple[NDArray[np.uint8], dict[str, object]]:
    reader = decord.VideoReader(str(path))
    indices = np.linspace(0, len(reader) - 1, count).round().astype(int).tolist()
    fps = reader.get_avg_fps()
    metadata = {"fps": fps, "frames_indices": indices, "total_num_frames": len(reader)}
    return reader.get_batch(indices).asnumpy(), metadata


def video_inputs(processor, arch: Arch, prompts: list[str], videos: list[Path]):  # type: ignore[no-untyped-def]
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "video", "video": str(v)}, {"type": "text", "text": p}]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for p, v in zip(prompts, videos, strict=True)
    ]
    decoded = [frames_and_metadata(v, 8) for v in videos]
    extra = {}
    if arch == "reason2":
        extra = {"video_metadata": [m for _, m in decoded], "do_sample_frames": False}
    return processor(text=texts, videos=[f for f, _ in decoded], return_tensors="pt", padding=True, **extra)


@pytest.mark.parametrize("arch", ARCHS)
def test_loads_through_the_auto_classes_with_the_real_architecture(
    tiny_checkpoints: TinyCheckpoints, arch: Arch
) -> None:
    loaded = load_pretrained(str(tiny_checkpoints(arch)))
    model_class, processor_class, factor = EXPECTED[arch]
    assert type(loaded.model).__name__ == model_class
    assert type(loaded.processor).__name__ == processor_class
    processor = loaded.processor
    assert processor.image_processor.patch_size * processor.image_processor.merge_size == factor
    assert processor.video_processor.patch_size * processor.video_processor.merge_size == factor
    parameters = sum(p.numel() for p in loaded.model.parameters())
    assert 100_000 < parameters < 1_000_000
    assert processor.tokenizer.padding_side == "left"
    assert not loaded.model.training


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_keeps_qwen_special_tokens_and_reasoning_tags(tiny_checkpoints: TinyCheckpoints, arch: Arch) -> None:
    tokenizer = load_pretrained(str(tiny_checkpoints(arch))).processor.tokenizer
    for token in (*SPECIAL_TOKENS, *REASONING_TOKENS):
        assert tokenizer.tokenize(token) == [token]
    assert set(SPECIAL_TOKENS) <= set(tokenizer.all_special_tokens)
    assert not set(REASONING_TOKENS) & set(tokenizer.all_special_tokens)
    text = "<think>\nThe ball & the <cup> fall.\n</think>\n\n<answer>\n4\n</answer>"
    ids = tokenizer(f"<|im_start|>{text}<|im_end|>")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_chat_templates_follow_the_qwen_layout(tiny_checkpoints: TinyCheckpoints) -> None:
    messages = [{"role": "user", "content": [{"type": "video", "video": "x.mp4"}, {"type": "text", "text": "Hi"}]}]
    reason1 = load_pretrained(str(tiny_checkpoints("reason1"))).processor
    reason2 = load_pretrained(str(tiny_checkpoints("reason2"))).processor
    body = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n"
    assert reason2.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == body
    assert reason1.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + body
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_generates_text_from_a_real_encoded_video(
    tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet, arch: Arch
) -> None:
    loaded = load_pretrained(str(tiny_checkpoints(arch)))
    video = synthetic_videos.good["h264_24fps"].path
    inputs = video_inputs(loaded.processor, arch, ["Does this video adhere to the physical laws?"], [video])
    video_token = loaded.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    grid = inputs["video_grid_thw"][0]
    assert (inputs["input_ids"] == video_token).sum().item() == grid.prod().item() // 4
    assert grid[0].item() == 4  # 8 frames, temporal patch 2

    with torch.no_grad():
        first = loaded.model.generate(**inputs, max_new_tokens=6, do_sample=False)
        second = loaded.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    new = first[:, inputs["input_ids"].shape[1] :]
    assert new.shape == (1, 6)
    assert torch.equal(first, second)
    text = loaded.processor.batch_decode(new, skip_special_tokens=False)[0]
    assert text == loaded.processor.tokenizer.decode(new[0])
    assert len(text) > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_batches_of_different_videos_and_prompt_lengths(
    tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet, arch: Arch
) -> None:
    loaded = load_pretrained(str(tiny_checkpoints(arch)))
    videos = [synthetic_videos.good["h264_24fps"].path, synthetic_videos.good["mpeg4_10fps"].path]
    inputs = video_inputs(loaded.processor, arch, ["Describe.", "Does this video adhere to the physical laws?"], videos)
    assert inputs["video_grid_thw"].shape == (2, 3)
    mask = inputs["attention_mask"]
    lengths = mask.sum(dim=1)
    assert lengths[0] != lengths[1]
    assert mask[lengths.argmin(), 0].item() == 0  # the shorter prompt is padded on the left
    assert mask[:, -1].all()
    with torch.no_grad():
        output = loaded.model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert output.shape == (2, inputs["input_ids"].shape[1] + 4)

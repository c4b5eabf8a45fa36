"""The vision towers attend their windows in batched calls, with the same outputs as transformers' per-window loop
(and, the models being those ``load_pretrained`` gives, with their per-grid index work)."""

from typing import Any

import pytest
import torch
from transformers import AutoModelForImageTextToText

from cookbook_data.prompts import load_prompt
from cookbook_data.testing import VideoSet
from cookbook_data.video import VisionSettings
from cookbook_infer.backends._vision_attention import _window_starts, batch_vision_attention
from cookbook_infer.backends.transformers import load_pretrained, model_inputs
from cookbook_infer.testing import Arch
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints

PROMPTS = {"reason1": "reason1_videophy2_critic_thinking", "reason2": "reason2_videophy2_critic"}


def test_windows_are_grouped_by_length() -> None:
    assert _window_starts(torch.tensor([0, 4, 8, 10, 10, 14])) == {4: [0, 4, 10], 2: [8]}


@pytest.mark.parametrize("arch", ["reason1", "reason2"])
def test_batched_windows_give_the_per_window_loop_s_logits(
    arch: Arch, tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet
) -> None:
    checkpoint = str(tiny_checkpoints(arch))
    batched = load_pretrained(checkpoint)
    reference: Any = AutoModelForImageTextToText.from_pretrained(checkpoint)
    reference.eval()
    factor = 28 if arch == "reason1" else 32
    # Different sizes and frame counts, so windows of several lengths (edge windows are shorter) share a batch.
    chosen = {
        "h264_24fps": {"nframes": 8, "max_pixels": 90 * factor**2},
        "mpeg4_8fps": {"nframes": 4, "max_pixels": 40 * factor**2},
        "h264_30fps_long": {"fps": 2},
    }
    conversations = [
        load_prompt(PROMPTS[arch]).conversation(
            [VisionSettings(**settings).video_part(str(synthetic_videos.good[name].path))]
        )
        for name, settings in chosen.items()
    ]
    inputs = model_inputs(batched.processor, reference.config.model_type, conversations)
    with torch.inference_mode():
        ours, theirs = batched.model(**inputs).logits, reference(**inputs).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)

    # The prompt's rope positions, computed on CPU copies (cookbook_infer.backends._grid_indices), are the same.
    arguments = {name: inputs[name] for name in ("input_ids", "video_grid_thw", "attention_mask")}
    if arch == "reason1":
        arguments["second_per_grid_ts"] = inputs["second_per_grid_ts"]
    for mine, stock in zip(
        batched.model.model.get_rope_index(**arguments), reference.model.get_rope_index(**arguments), strict=True
    ):
        assert torch.equal(mine, stock)
    lengths = _window_starts(torch.cumsum(torch.tensor([0, *inputs["video_grid_thw"].prod(-1).tolist()]), 0))
    assert len(lengths) >= 2  # the videos really differ in size


def test_only_sdpa_vision_towers_are_changed(tiny_checkpoints: TinyCheckpoints) -> None:
    checkpoint = str(tiny_checkpoints("reason1"))
    eager = AutoModelForImageTextToText.from_pretrained(checkpoint, attn_implementation="eager")
    assert batch_vision_attention(eager) == 0
    sdpa = AutoModelForImageTextToText.from_pretrained(checkpoint, attn_implementation="sdpa")
    assert batch_vision_attention(sdpa) == sdpa.config.vision_config.depth
    assert batch_vision_attention(torch.nn.Linear(2, 2)) == 0

"""Video frames cut into patches as uint8 and normalised a video at a time give the stock Qwen-VL processors'
model input bit for bit: the patches, the grids, the prompt's video tokens and (Qwen3-VL) timestamps."""

import copy

import pytest
import torch
from transformers import AutoProcessor

from cookbook_data.prompts import load_prompt
from cookbook_data.testing import VideoSet
from cookbook_data.video import VisionSettings
from cookbook_infer.backends import transformers as backend
from cookbook_infer.backends._video_patches import cut_patches, patching_processor
from cookbook_infer.testing import Arch
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_infer.vision import model_videos

MODEL_TYPES = {"reason1": "qwen2_5_vl", "reason2": "qwen3_vl"}
VIDEOS = [
    ("h264_24fps", VisionSettings(nframes=8)),
    ("h264_24fps", VisionSettings(nframes=8)),  # cut to 7 frames below: the last is repeated to fill a patch
    ("h264_portrait_15fps", VisionSettings(nframes=4)),  # another frame size in the batch
]


def _equal(ours: object, stock: object) -> None:
    if isinstance(ours, torch.Tensor):
        assert isinstance(stock, torch.Tensor) and ours.dtype == stock.dtype and torch.equal(ours, stock)
    else:
        assert ours == stock


@pytest.mark.parametrize("arch", ["reason1", "reason2"])
def test_model_input_equals_the_stock_processors(
    arch: Arch, tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    processor = AutoProcessor.from_pretrained(tiny_checkpoints(arch))  # type: ignore[no-untyped-call]
    prompt = load_prompt("reason1_videophy2_critic")
    conversations = [
        prompt.conversation([settings.video_part(str(synthetic_videos.good[name].path))]) for name, settings in VIDEOS
    ]
    videos = model_videos(conversations, backend.PATCH_FACTORS[MODEL_TYPES[arch]])
    videos[1] = (videos[1][0], videos[1][1][:7])  # the sampler gives even counts; frames made elsewhere may not
    assert [frames.shape[0] for _, frames in videos] == [8, 7, 4]
    assert videos[2][1].shape[2:] != videos[0][1].shape[2:]

    ours = backend.model_inputs(processor, MODEL_TYPES[arch], conversations, videos=videos)
    monkeypatch.setattr(backend, "patching_processor", lambda processor: processor)
    stock = backend.model_inputs(processor, MODEL_TYPES[arch], conversations, videos=videos)

    assert set(ours.keys()) == set(stock.keys())
    for key in stock:
        _equal(ours[key], stock[key])
    assert ours["pixel_values_videos"].dtype == torch.float32


def test_the_given_processor_is_left_as_it_is(tiny_checkpoints: TinyCheckpoints) -> None:
    processor = AutoProcessor.from_pretrained(tiny_checkpoints("reason1"))  # type: ignore[no-untyped-call]
    stock = processor.video_processor
    patching = patching_processor(processor)
    assert processor.video_processor is stock
    assert patching.tokenizer is processor.tokenizer
    assert patching.video_processor.merge_size == stock.merge_size
    frames = torch.zeros((2, 3, 56, 56), dtype=torch.uint8)
    with pytest.raises(ValueError, match="resized and sampled before"):
        patching.video_processor([frames], do_resize=True)


def test_patches_keep_each_patchs_pixels_together() -> None:
    """A frame whose every pixel holds its own (time, row, column) comes out with each patch's pixels in one row,
    the rows in the merge order the vision tower expects."""
    t, h, w = torch.meshgrid(torch.arange(2), torch.arange(4), torch.arange(4), indexing="ij")
    frames = torch.stack([t, h, w], dim=1)  # (T=2, C=3, H=4, W=4): channel 0 time, 1 row, 2 column
    patches = cut_patches(frames, patch_size=2, temporal_patch_size=2, merge_size=2)
    assert patches.shape == (4, 3 * 2 * 2 * 2)
    per_patch = patches.view(4, 3, 2, 2, 2)  # (patch, channel, time, row, column)
    rows = per_patch[:, 1].amin(dim=(1, 2, 3))
    columns = per_patch[:, 2].amin(dim=(1, 2, 3))
    assert rows.tolist() == [0, 0, 2, 2] and columns.tolist() == [0, 2, 0, 2]  # one 2x2 merge block, row by row
    assert torch.equal(per_patch[:, 0, 1], torch.ones(4, 2, 2, dtype=per_patch.dtype))  # the second frame's pixels


def test_a_copy_of_the_patching_processor_works_alike(tiny_checkpoints: TinyCheckpoints) -> None:
    processor = AutoProcessor.from_pretrained(tiny_checkpoints("reason1"))  # type: ignore[no-untyped-call]
    patching = patching_processor(processor)
    frames = torch.randint(0, 256, (4, 3, 56, 84), dtype=torch.uint8)
    first = patching.video_processor([frames])
    again = copy.deepcopy(patching.video_processor)([frames])
    assert torch.equal(first["pixel_values_videos"], again["pixel_values_videos"])
    assert first["video_grid_thw"].tolist() == [[2, 4, 6]]

"""The transformers backend generates from conversations with video parts, honouring their vision settings."""

import pytest
import torch

from cookbook_data.prompts import load_prompt
from cookbook_data.schemas import Conversation
from cookbook_data.testing import VideoSet
from cookbook_data.video import VisionSettings, sample_frames
from cookbook_infer.backends.base import SamplingSettings
from cookbook_infer.backends.transformers import TransformersBackend, model_inputs
from cookbook_infer.testing import Arch
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints

ARCHS: list[Arch] = ["reason1", "reason2"]
PROMPTS = {"reason1": "reason1_videophy2_critic_thinking", "reason2": "reason2_videophy2_critic"}
GREEDY = SamplingSettings(max_new_tokens=6)


def critic(arch: Arch, video: str, settings: VisionSettings) -> Conversation:
    return load_prompt(PROMPTS[arch]).conversation([settings.video_part(video)])


@pytest.fixture(scope="module", params=ARCHS)
def backend(request: pytest.FixtureRequest, tiny_checkpoints: TinyCheckpoints) -> TransformersBackend:
    return TransformersBackend(str(tiny_checkpoints(request.param)))


def arch_of(backend: TransformersBackend) -> Arch:
    return "reason1" if backend.patch_factor == 28 else "reason2"


def test_the_processor_receives_exactly_the_frames_the_settings_choose(
    backend: TransformersBackend, synthetic_videos: VideoSet
) -> None:
    video = str(synthetic_videos.good["h264_30fps_long"].path)
    settings = VisionSettings(fps=2, max_pixels=64 * backend.patch_factor**2)
    inputs = backend._inputs([critic(arch_of(backend), video, settings)])
    expected = sample_frames(video, settings.model_copy(update={"patch_factor": backend.patch_factor}))
    patch = backend.patch_factor // 2
    grid = inputs["video_grid_thw"][0].tolist()
    assert grid == [
        len(expected.frame_indices) // 2,
        expected.resized_height // patch,
        expected.resized_width // patch,
    ]
    assert len(expected.frame_indices) == 10  # 5 s at 2 fps


def test_generates_for_a_batch_deterministically(backend: TransformersBackend, synthetic_videos: VideoSet) -> None:
    settings = VisionSettings(fps=4)
    arch = arch_of(backend)
    conversations = [critic(arch, str(v.path), settings) for v in synthetic_videos.good.values()]
    first = backend.generate(conversations, GREEDY)
    second = backend.generate(conversations, GREEDY)
    assert first == second
    assert len(first) == len(conversations)
    assert all(1 <= g.num_generated_tokens <= 6 for g in first)


def test_batched_greedy_output_equals_one_by_one(backend: TransformersBackend, synthetic_videos: VideoSet) -> None:
    settings = VisionSettings(nframes=4)
    arch = arch_of(backend)
    conversations = [critic(arch, str(synthetic_videos.good[n].path), settings) for n in ("h264_24fps", "mpeg4_8fps")]
    batched = backend.generate(conversations, GREEDY)
    alone = [backend.generate([c], GREEDY)[0] for c in conversations]
    assert batched == alone
    # Prompt lengths count each prompt's own tokens (videos of two sizes: the shorter prompt is padded in the batch).
    lengths = [backend._inputs([c])["input_ids"].shape[1] for c in conversations]
    assert [g.num_prompt_tokens for g in batched] == lengths and lengths[0] != lengths[1]


def test_sampling_is_seeded(backend: TransformersBackend, synthetic_videos: VideoSet) -> None:
    conversation = critic(arch_of(backend), str(synthetic_videos.good["h264_24fps"].path), VisionSettings(nframes=4))
    hot = SamplingSettings(max_new_tokens=12, temperature=1.5, top_p=1.0, seed=7)
    first = backend.generate([conversation], hot)
    assert backend.generate([conversation], hot) == first
    others = {backend.generate([conversation], hot.model_copy(update={"seed": s}))[0].text for s in range(5)}
    assert len(others) > 1


def test_text_only_conversations_work(backend: TransformersBackend) -> None:
    conversation = Conversation.from_messages_json('[{"role": "user", "content": "Say hello."}]')
    [generation] = backend.generate([conversation], GREEDY)
    assert generation.num_generated_tokens >= 1


def test_a_broken_video_fails_naming_the_file(backend: TransformersBackend, synthetic_videos: VideoSet) -> None:
    path = str(synthetic_videos.broken["truncated"])
    with pytest.raises(RuntimeError, match=r"truncated\.mp4: cannot open as video"):
        backend.generate([critic(arch_of(backend), path, VisionSettings())], GREEDY)


DIGITS = ["1", "2", "3", "4", "5"]


def test_next_token_probabilities_equal_a_softmax_of_the_full_forward_pass(
    backend: TransformersBackend, synthetic_videos: VideoSet
) -> None:
    import torch

    settings = VisionSettings(fps=2)
    arch = arch_of(backend)
    videos = [str(synthetic_videos.good[name].path) for name in ("h264_24fps", "mpeg4_8fps")]
    conversations = [critic(arch, video, settings) for video in videos]
    prefixes = ["<answer>\n", ""]

    got = backend.next_token_probabilities(conversations, DIGITS, prefixes)

    tokenizer = backend.loaded.processor.tokenizer
    for conversation, prefix, result in zip(conversations, prefixes, got, strict=True):
        inputs = backend._inputs([conversation], [prefix])  # one at a time: no padding involved
        with torch.inference_mode():
            logits = backend.loaded.model(**inputs).logits[0, -1].double()
        full = torch.softmax(logits, dim=-1)
        ids = [tokenizer.convert_tokens_to_ids(digit) for digit in DIGITS]
        mass = float(full[ids].sum())
        assert result.mass == pytest.approx(mass, rel=1e-4)
        for digit, token in zip(DIGITS, ids, strict=True):
            assert result.probabilities[digit] == pytest.approx(float(full[token]) / mass, rel=1e-4)
    assert got[0] != got[1]


def test_the_prefix_is_what_the_assistant_already_wrote(backend: TransformersBackend) -> None:
    conversation = Conversation.model_validate({"messages": [{"role": "user", "content": "Score between 1 and 5."}]})
    inputs = backend._inputs([conversation], ["<answer>\n"])
    text = backend.loaded.processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.endswith("<|im_start|>assistant\n<answer>\n")


def test_a_candidate_that_is_not_one_token_is_refused(backend: TransformersBackend) -> None:
    conversation = Conversation.model_validate({"messages": [{"role": "user", "content": "Approve?"}]})
    with pytest.raises(ValueError, match=r"candidate 'Approve' is 2 tokens"):
        backend.next_token_probabilities([conversation], ["Approve", "Yes"])


def test_a_backend_around_a_model_in_memory_answers_like_one_loaded_by_id(
    backend: TransformersBackend, synthetic_videos: VideoSet
) -> None:
    adopted = TransformersBackend.from_loaded(backend.loaded)
    conversation = critic(arch_of(backend), str(synthetic_videos.good["h264_24fps"].path), VisionSettings(nframes=4))
    assert adopted.model_type == backend.model_type
    assert adopted.next_token_probabilities([conversation], ["1", "2"]) == backend.next_token_probabilities(
        [conversation], ["1", "2"]
    )


def test_a_batch_s_videos_are_decoded_on_parallel_threads_and_kept_in_order(
    backend: TransformersBackend, synthetic_videos: VideoSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from cookbook_infer import vision

    names = ["h264_24fps", "mpeg4_8fps", "h264_30fps_long"]
    settings = VisionSettings(nframes=4)
    conversations = [critic(arch_of(backend), str(synthetic_videos.good[n].path), settings) for n in names]
    threads: set[str] = set()

    def recording(path: str, chosen: VisionSettings) -> object:
        threads.add(threading.current_thread().name)
        return sample_frames(path, chosen)

    monkeypatch.setattr(vision, "decode_threads", lambda videos: videos)
    monkeypatch.setattr("cookbook_infer.vision.sample_frames", recording)
    ready = vision.model_videos(conversations, backend.patch_factor)
    expected = [
        sample_frames(
            str(synthetic_videos.good[n].path), settings.model_copy(update={"patch_factor": backend.patch_factor})
        )
        for n in names
    ]
    assert [video.frame_indices for video, _ in ready] == [video.frame_indices for video in expected]
    assert [frames.shape[0] for _, frames in ready] == [len(video.frame_indices) for video in expected]
    assert all(video.frames.shape[0] == 0 for video, _ in ready)  # native-resolution frames dropped once resized
    assert len(threads) > 1
    assert all(name.startswith("decode") for name in threads)


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU"))],
)
def test_frames_are_patched_on_the_device_asked_for(
    backend: TransformersBackend, synthetic_videos: VideoSet, device: str
) -> None:
    conversations = [critic(arch_of(backend), str(synthetic_videos.good["h264_24fps"].path), VisionSettings(nframes=4))]
    processor, model_type = backend.loaded.processor, backend.model_type
    on_cpu = model_inputs(processor, model_type, conversations)
    moved = model_inputs(processor, model_type, conversations, device=device)
    assert moved["pixel_values_videos"].device.type == device
    assert moved["input_ids"].device.type == "cpu"
    torch.testing.assert_close(moved["pixel_values_videos"].cpu(), on_cpu["pixel_values_videos"], rtol=0, atol=1e-6)
    assert torch.equal(moved["video_grid_thw"].cpu(), on_cpu["video_grid_thw"])

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from cookbook_eval._i3d import I3D
from cookbook_eval._inception import build_inception
from cookbook_eval.features import (
    I3DFeatures,
    InceptionFeatures,
    WeightsError,
    captured_network_input,
    resolve_weights,
)


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    return InceptionFeatures("random", image_size=96, seed=0)


@pytest.fixture(scope="module")
def i3d() -> I3DFeatures:
    return I3DFeatures("random", image_size=64, seed=0)


def _frames(n: int, height: int = 60, width: int = 80, seed: int = 0) -> NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_inception_gives_2048_features_per_frame(inception: InceptionFeatures) -> None:
    features = inception(_frames(3))
    assert features.shape == (3, 2048)
    assert features.dtype == np.float64
    assert np.isfinite(features).all() and features.std() > 0
    assert not inception.comparable and inception.weights_id == "random:seed=0"


def test_inception_at_the_fid_size() -> None:
    extractor = InceptionFeatures("random")
    assert extractor.image_size == 299
    with captured_network_input(extractor) as seen:
        features = extractor(_frames(2, 120, 160))
    assert features.shape == (2, 2048)
    assert seen[0].shape == (2, 3, 299, 299)


def test_i3d_gives_400_logits_per_clip(i3d: I3DFeatures) -> None:
    clips = np.stack([_frames(8, seed=1), _frames(8, seed=2)])
    features = i3d(clips)
    assert features.shape == (2, 400)
    assert np.isfinite(features).all() and not np.allclose(features[0], features[1])
    assert not i3d.comparable


def test_i3d_has_inception_v1_widths_inflated() -> None:
    network = I3D()
    assert network.feature_channels == 1024  # 384 + 384 + 128 + 128 out of mixed_5c
    assert sum(p.numel() for p in network.parameters()) == 12_697_264
    assert network.conv1a.conv.weight.shape == (64, 3, 7, 7, 7)
    with torch.inference_mode():
        trunk = network.eval().trunk(torch.zeros(1, 3, 16, 224, 224))
    assert trunk.shape == (1, 1024, 2, 7, 7)  # the shape the 2x7x7 average pool was designed for


def test_uint8_frames_reach_the_network_in_minus_one_to_one(inception: InceptionFeatures, i3d: I3DFeatures) -> None:
    frames = _frames(4)
    frames[0] = 0
    frames[1] = 255
    with captured_network_input(inception) as seen:
        inception(frames)
    (tensor,) = seen
    assert tensor.dtype == torch.float32
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    assert torch.all(tensor[0] == -1.0) and torch.all(tensor[1] == 1.0)  # black -> -1, white -> +1, no overflow
    assert tensor[2:].min() < -0.9 and tensor[2:].max() > 0.9  # the full range is used, not squashed
    clips = np.stack([frames, frames[::-1]])
    with captured_network_input(i3d) as seen:
        i3d(clips)
    (video,) = seen
    assert video.shape == (2, 3, 4, 64, 64)
    assert video.min() >= -1.0 and video.max() <= 1.0
    # 80 -> 64 columns is a bilinear shrink: its weights sum to 1 up to float rounding
    torch.testing.assert_close(video[0, :, 1], torch.ones_like(video[0, :, 1]))
    torch.testing.assert_close(video[1, :, 3], -torch.ones_like(video[1, :, 3]))


def test_float_frames_are_refused(inception: InceptionFeatures) -> None:
    # The published FID script passed 0-255 floats where [0, 1] was expected: never guess the scale.
    with pytest.raises(TypeError, match="uint8"):
        inception(_frames(1).astype(np.float32))


def test_tf_pooling_leaves_padding_out_of_the_averages() -> None:
    network = build_inception(tf_pooling=True).eval()
    torch.manual_seed(0)
    x = torch.rand(1, 192, 12, 12)
    block = network.Mixed_5b
    with torch.inference_mode():
        pool_branch = block(x)[:, -32:]
        averaged = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        expected = F.relu(block.branch_pool.bn(block.branch_pool.conv(averaged)))
    torch.testing.assert_close(pool_branch, expected)
    plain = build_inception(tf_pooling=False).eval()
    plain.load_state_dict(network.state_dict())  # same parameters, same keys
    with torch.inference_mode():
        assert not torch.allclose(plain.Mixed_5b(x), block(x))
        y = torch.rand(1, 2048, 8, 8)
        last = network.Mixed_7c(y)[:, -192:]
        maxed = F.relu(network.Mixed_7c.branch_pool.bn(network.Mixed_7c.branch_pool.conv(F.max_pool2d(y, 3, 1, 1))))
    torch.testing.assert_close(last, maxed)


def test_weights_round_trip_through_a_state_dict_file(tmp_path: Path, inception: InceptionFeatures) -> None:
    path = tmp_path / "inception.pth"
    state = inception.network.state_dict()
    state["fc.weight"] = torch.zeros(1008, 2048)  # a classifier head, as converted FID weights carry, is ignored
    torch.save(state, path)
    loaded = InceptionFeatures(str(path), image_size=96)
    assert loaded.comparable
    assert loaded.weights_id.startswith(f"{path}#sha256:")
    frames = _frames(2)
    np.testing.assert_array_equal(loaded(frames), inception(frames))
    other = InceptionFeatures("random", image_size=96, seed=1)
    assert not np.allclose(other(frames), inception(frames))


def test_i3d_weights_round_trip_through_safetensors(tmp_path: Path, i3d: I3DFeatures) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "i3d.safetensors"
    save_file({key: value.contiguous() for key, value in i3d.network.state_dict().items()}, str(path))
    loaded = I3DFeatures(str(path), image_size=64)
    clips = np.stack([_frames(4)])
    np.testing.assert_array_equal(loaded(clips), i3d(clips))


def test_weights_without_batch_norm_counters_load(tmp_path: Path, i3d: I3DFeatures) -> None:
    path = tmp_path / "converted.pth"  # as converted from TensorFlow: no num_batches_tracked
    torch.save({k: v for k, v in i3d.network.state_dict().items() if not k.endswith("num_batches_tracked")}, path)

    loaded = I3DFeatures(str(path), image_size=64)

    clips = np.stack([_frames(4)])
    np.testing.assert_array_equal(loaded(clips), i3d(clips))


def test_missing_or_wrong_weights_give_clear_errors(tmp_path: Path, i3d: I3DFeatures) -> None:
    missing = tmp_path / "nowhere" / "inception.pth"
    with pytest.raises(WeightsError, match=r"weights file .*nowhere/inception\.pth not found.*random"):
        InceptionFeatures(str(missing))
    with pytest.raises(WeightsError, match="hf://owner/name"):
        resolve_weights("hf://only-owner")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable state_dict"):
        InceptionFeatures(str(garbage))
    wrong = tmp_path / "i3d.pth"
    torch.save(i3d.network.state_dict(), wrong)
    with pytest.raises(WeightsError, match="not inception_v3_pool3 weights"):
        InceptionFeatures(str(wrong))

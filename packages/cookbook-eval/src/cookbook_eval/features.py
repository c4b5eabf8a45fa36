"""Feature extractors for FID (InceptionV3 pool3, 2048-d) and FVD (I3D Kinetics-400 logits, 400-d).

Input contract (the published FID script got this wrong, feeding 0-255 floats to code that expected
[0, 1], and overflowed): extractors take **uint8 RGB** arrays with values 0-255 and nothing else; a float
array is refused rather than guessed about. Each frame goes uint8 -> float32 / 255 (in [0, 1]) -> resized
to the protocol's square size with bilinear interpolation (not antialiased, as the published FID and FVD code
resize, unless ``antialias`` is set; a bilinear filter has non-negative weights, so values stay in [0, 1])
-> x * 2 - 1, the [-1, 1] range both reference networks were trained on. :meth:`Extractor.network_input`
returns exactly what the network sees.

Weights (``weights``):

- ``"random"``: the architecture with parameters drawn from a seeded generator (He-normal convolutions,
  identity batch norm). Deterministic and useful to test the pipeline; the numbers mean nothing outside the
  run and are marked not comparable to published ones.
- a local file: a state_dict saved with ``torch.save`` (``.pt``/``.pth``/``.bin``) or a ``.safetensors`` file,
  in the layout of torchvision's ``Inception3`` (a classifier ``fc.*`` and auxiliary ``AuxLogits.*`` are
  ignored, so the FID community's converted TensorFlow weights load as they are) or of :mod:`._i3d`.
- ``hf://owner/name/path/in/repo.pth`` (optionally ``@revision`` after the path): a file fetched with
  ``huggingface_hub.hf_hub_download``.

The weights id recorded in results names the source and the first 16 hex digits of the file's SHA-256.
:class:`ExtractorSettings` names an extractor without loading it: a job carries it to where its batches run
(a Ray actor) and builds the network there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch
    from torch import nn

RANDOM_WEIGHTS = "random"
HUB_PREFIX = "hf://"
NETWORK_INPUT_RANGE = (-1.0, 1.0)
"""Range of every value the networks receive."""
IGNORED_KEYS = {"inception_v3_pool3": ("fc.", "AuxLogits."), "i3d_kinetics400_logits": ()}
"""Prefixes of a state_dict left out on loading (heads the features do not use)."""


class WeightsError(ValueError):
    """Weights that cannot be found, read or loaded into the architecture; the message says which and why."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(source: str) -> Path:
    """The local file ``source`` names: a path, or ``hf://owner/name/file[@revision]`` downloaded to the hub
    cache. Raises :class:`WeightsError` when it does not exist."""
    if source.startswith(HUB_PREFIX):
        spec, _, revision = source.removeprefix(HUB_PREFIX).partition("@")
        parts = spec.split("/")
        if len(parts) < 3 or not all(parts):
            raise WeightsError(f"{source}: expected hf://owner/name/path/to/file[@revision]")
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            raise ImportError("weights from the hub need huggingface_hub: pip install huggingface_hub") from None
        try:
            return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]), revision=revision or None))
        except Exception as error:
            raise WeightsError(f"{source}: cannot download ({type(error).__name__}: {error})") from None
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} not found. Give a state_dict file (.pt, .pth, .bin, .safetensors), "
            f"hf://owner/name/path/to/file for a file on the Hugging Face hub, or '{RANDOM_WEIGHTS}' for the "
            "architecture with seeded random weights (numbers not comparable to published ones)."
        )
    return path


def weights_id(weights: str, seed: int = 0) -> str:
    """The id results record for ``weights`` (``random:seed=N``, or the source and the first 16 hex digits of
    the file's SHA-256), known without building a network: what a run is fingerprinted with before its
    extractors load anywhere. Hub weights are downloaded to be hashed."""
    if weights == RANDOM_WEIGHTS:
        return f"{RANDOM_WEIGHTS}:seed={seed}"
    return _file_id(weights, resolve_weights(weights))


def _file_id(weights: str, path: Path) -> str:
    return f"{weights}#sha256:{_sha256(path)[:16]}"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, unwrapped from a ``{"state_dict": ...}`` checkpoint and ``module.`` prefixes."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(path))
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path}: not a readable state_dict ({type(error).__name__}: {error})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise WeightsError(f"{path}: expected a mapping of parameter names to tensors (a state_dict)")
    state: dict[str, torch.Tensor] = dict(loaded)
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def seeded_init(model: nn.Module, seed: int) -> None:
    """Draw every parameter from a generator seeded with ``seed``: He-normal (fan in) convolution and linear
    weights, zero biases, identity batch norms. Activations keep their scale through deep stacks."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d | nn.Linear):
                weight = torch.empty(module.weight.shape)
                nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)
                module.weight.copy_(weight)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm3d):
                module.reset_parameters()


_BATCHES_TRACKED = "num_batches_tracked"


def _counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch-norm step counters of ``state`` (kept from the network where a weights file has none)."""
    return {key: value for key, value in state.items() if key.endswith(_BATCHES_TRACKED)}


class Extractor:
    """Base of the two extractors: weights, device, the input conversion and batched inference."""

    name: ClassVar[str]
    dim: ClassVar[int]
    default_size: ClassVar[int]
    architecture: ClassVar[str]

    def __init__(
        self,
        weights: str,
        *,
        image_size: int | None = None,
        antialias: bool = False,
        seed: int = 0,
        device: str | None = None,
        batch_size: int = 16,
    ) -> None:
        import torch

        self.image_size = image_size or self.default_size
        self.antialias = antialias
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        network = self._build()
        if weights == RANDOM_WEIGHTS:
            seeded_init(network, seed)
            self.weights_id = weights_id(weights, seed)
            self.comparable = False
        else:
            path = resolve_weights(weights)
            self._load(network, read_state_dict(path), path)
            self.weights_id = _file_id(weights, path)
            self.comparable = True
        self.network = network.to(self.device).eval()

    def _build(self) -> nn.Module:
        raise NotImplementedError

    def _load(self, network: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
        ignored = IGNORED_KEYS[self.name]
        state = {key: value for key, value in state.items() if not key.startswith(ignored)}
        expected = network.state_dict()
        # A batch-norm counter, unused in evaluation; weights converted from TensorFlow do not carry it.
        missing = sorted(key for key in expected.keys() - state.keys() if not key.endswith(_BATCHES_TRACKED))
        unexpected = sorted(state.keys() - expected.keys())
        if missing or unexpected:
            raise WeightsError(
                f"{path}: not {self.name} weights: {len(missing)} parameters missing (e.g. {missing[:3]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )
        wrong = [key for key, value in state.items() if value.shape != expected[key].shape]
        if wrong:
            key = wrong[0]
            raise WeightsError(
                f"{path}: {len(wrong)} parameters have the wrong shape, e.g. {key}: "
                f"{tuple(state[key].shape)} instead of {tuple(expected[key].shape)}"
            )
        network.load_state_dict({**_counters(expected), **state}, strict=True)

    def _to_unit(self, frames: NDArray[np.uint8]) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, S, S) float32 in [0, 1], resized."""
        import torch
        import torch.nn.functional as F

        array = np.asarray(frames)
        if array.dtype != np.uint8:
            raise TypeError(
                f"{self.name}: expected uint8 RGB frames with values 0-255, got {array.dtype}; convert floats in "
                "[0, 1] with (x * 255).round().astype(np.uint8) rather than passing them"
            )
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"{self.name}: expected frames of shape (N, H, W, 3), got {array.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        size = (self.image_size, self.image_size)
        if tuple(tensor.shape[2:]) != size:
            tensor = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=self.antialias)
        return tensor.clamp_(0.0, 1.0)

    def network_input(self, array: NDArray[np.uint8]) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, inputs: torch.Tensor) -> NDArray[np.float64]:
        """Features of network inputs (as :meth:`network_input` makes them), in batches, as float64."""
        import torch

        outputs = []
        with torch.inference_mode():
            for start in range(0, inputs.shape[0], self.batch_size):
                batch = inputs[start : start + self.batch_size].to(self.device)
                outputs.append(self.network(batch).float().cpu().numpy())
        if not outputs:
            return np.zeros((0, self.dim), dtype=np.float64)
        features: NDArray[np.float64] = np.concatenate(outputs).astype(np.float64)
        return features

    def __call__(self, array: NDArray[np.uint8]) -> NDArray[np.float64]:
        """Features of uint8 frames (Inception: (N, H, W, 3)) or clips (I3D: (N, T, H, W, 3))."""
        return self.embed(self.network_input(array))


class InceptionFeatures(Extractor):
    """InceptionV3 pool3 features (2048-d) of single frames, for FID. Frames are resized to 299x299 by
    default; the network pools as the TensorFlow FID graph does (see :mod:`._inception`)."""

    name = "inception_v3_pool3"
    dim = 2048
    default_size = 299
    architecture = "torchvision inception_v3 with the TensorFlow FID graph's pooling"

    def _build(self) -> nn.Module:
        from cookbook_eval._inception import build_inception

        if (self.image_size or 0) < 75:
            raise ValueError(f"InceptionV3 needs inputs of at least 75x75, got image_size={self.image_size}")
        network: nn.Module = build_inception(tf_pooling=True)
        return network

    def network_input(self, array: NDArray[np.uint8]) -> torch.Tensor:
        """(N, H, W, 3) uint8 frames -> (N, 3, S, S) float32 in [-1, 1]."""
        return self._to_unit(array).mul_(2.0).sub_(1.0)


class I3DFeatures(Extractor):
    """I3D Kinetics-400 logits (400-d) of clips, for FVD. Clips are resized to 224x224 by default."""

    name = "i3d_kinetics400_logits"
    dim = 400
    default_size = 224
    architecture = "I3D (inflated Inception-v1, RGB)"

    def _build(self) -> nn.Module:
        from cookbook_eval._i3d import I3D

        return I3D()

    def network_input(self, array: NDArray[np.uint8]) -> torch.Tensor:
        """(N, T, H, W, 3) uint8 clips -> (N, 3, T, S, S) float32 in [-1, 1]."""
        clips = np.asarray(array)
        if clips.ndim != 5:
            raise ValueError(f"{self.name}: expected clips of shape (N, T, H, W, 3), got {clips.shape}")
        n, t = clips.shape[:2]
        frames = self._to_unit(clips.reshape(n * t, *clips.shape[2:]))
        size = self.image_size
        return frames.reshape(n, t, 3, size, size).permute(0, 2, 1, 3, 4).mul_(2.0).sub_(1.0).contiguous()


@dataclass(frozen=True)
class ExtractorSettings:
    """An extractor named by its settings, not built: what a job carries to where its batches run (pickled to
    each Ray actor) and builds there, so the network is loaded, and the device chosen, on that machine. It
    also describes the extractor (name, dimension, input size, architecture) without loading anything."""

    kind: type[Extractor]
    weights: str
    image_size: int | None = None
    antialias: bool = False
    seed: int = 0
    device: str | None = None
    batch_size: int = 16

    @property
    def wants_gpu(self) -> bool:
        """Whether the extractor runs on a GPU where one is (every device but the CPU): a cluster then gives
        each extracting actor one, and an extractor told to use the CPU does not hold one idle."""
        return self.device is None or self.device.split(":")[0] != "cpu"

    @property
    def size(self) -> int:
        """Side of the square network input."""
        return self.image_size or self.kind.default_size

    @property
    def comparable(self) -> bool:
        """Whether the weights are real ones (random weights compare sets within a run only)."""
        return self.weights != RANDOM_WEIGHTS

    def build(self) -> Extractor:
        """The extractor, its network loaded on ``device`` (default: cuda where this machine has it)."""
        return self.kind(
            self.weights,
            image_size=self.image_size,
            antialias=self.antialias,
            seed=self.seed,
            device=self.device,
            batch_size=self.batch_size,
        )


@contextmanager
def captured_network_input(extractor: Extractor) -> Iterator[list[torch.Tensor]]:
    """Collect every tensor the extractor's network receives while the block runs (for checks and tests)."""
    seen: list[torch.Tensor] = []

    def hook(_module: Any, args: tuple[Any, ...]) -> None:
        seen.append(args[0].detach().clone())

    handle = extractor.network.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()

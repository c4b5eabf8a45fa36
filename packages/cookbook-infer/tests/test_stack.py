"""cookbook-infer runs on the one pinned stack; vLLM stays an extra that is not installed by default."""

from importlib import metadata
from importlib.util import find_spec


def test_torch_and_transformers_are_at_the_pinned_versions() -> None:
    assert metadata.version("torch").startswith("2.10.0")
    assert metadata.version("torchvision").startswith("0.25.0")
    assert metadata.version("transformers").startswith("4.57.")


def test_vllm_is_only_an_extra() -> None:
    requires = metadata.requires("cookbook-infer") or []
    vllm = [r for r in requires if r.startswith("vllm")]
    assert vllm
    assert all("extra ==" in r for r in vllm)
    assert all("==0.17.0" in r for r in vllm)
    assert find_spec("vllm") is None

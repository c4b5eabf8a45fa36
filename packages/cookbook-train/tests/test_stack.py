"""cookbook-train runs on cosmos-rl 0.4.7 and the stack it pins; catch a drifting lock early."""

from importlib import metadata

from packaging.version import Version


def test_cosmos_rl_and_the_stack_it_needs_are_installed_at_the_pinned_versions() -> None:
    assert metadata.version("cosmos-rl") == "0.4.7"
    assert Version(metadata.version("transformers")) < Version("5")
    assert metadata.version("torch").startswith("2.10.0")


def test_the_cosmos_rl_plug_in_points_we_build_on_exist() -> None:
    from cosmos_rl.launcher import worker_entry
    from cosmos_rl.policy.config import Config

    assert callable(worker_entry.main)
    assert callable(Config.from_dict)

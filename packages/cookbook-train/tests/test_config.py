"""Recipes are strict, and render into cosmos-rl configs that cosmos-rl's own classes accept as we mean them."""

import math
import shutil
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import toml

from cookbook_data.clikit import resolve_config
from cookbook_train.config import RUN_CONFIGS, GRPOConfig, SFTConfig, TrainConfig
from cookbook_train.data import DatasetError, check_dataset
from cookbook_train.render import PARALLELISM_KEYS, RenderError, render, to_toml, unknown_keys, validate_rendered
from cookbook_train.rewards import reward_functions, total_reward

RECIPES = sorted((Path(__file__).parents[3] / "configs" / "train").glob("*.toml"))


def load_recipe(path: Path, sets: list[str] | None = None) -> TrainConfig:
    kind = tomllib.loads(path.read_text())["kind"]
    return resolve_config(RUN_CONFIGS[kind], path, sets, {})


def recipe(name: str) -> Path:
    return next(path for path in RECIPES if path.name == name)


def test_recipes_are_shipped_for_every_published_training_job() -> None:
    kinds = {path.name: tomllib.loads(path.read_text())["kind"] for path in RECIPES}
    assert kinds == {
        "reason1_videophy2_sft.toml": "sft",
        "reason2_videophy2_sft.toml": "sft",
        "reason1_videophy2_grpo.toml": "grpo",
        "reason2_caption_sft.toml": "sft",
        "reason2_vqa_sft_lora.toml": "sft",
    }


@pytest.mark.parametrize("path", RECIPES, ids=[path.stem for path in RECIPES])
def test_every_shipped_recipe_renders_a_config_cosmos_rl_accepts(path: Path) -> None:
    config = load_recipe(path)
    rendered = render(config)
    cosmos = validate_rendered(rendered)
    # What the TOML file says is what was validated, parallelism keys all explicit in both tables.
    text = tomllib.loads(to_toml(rendered))
    assert text == rendered
    for table in ("policy", "rollout"):
        assert set(PARALLELISM_KEYS) <= set(text[table]["parallelism"])
    assert cosmos.policy.parallelism.tp_size == config.cosmos.policy.tp
    assert cosmos.policy.parallelism.dp_shard_size == config.cosmos.policy.dp_shard
    assert cosmos.rollout.parallelism.tp_size == config.cosmos.rollout.tp
    assert cosmos.train.compile is False
    assert cosmos.train.optm_lr == config.lr
    assert cosmos.policy.model_name_or_path == config.model
    assert cosmos.train.train_policy.type == config.kind
    assert (cosmos.policy.lora is not None) == (config.lora is not None)
    assert text["custom"]["cookbook"]["kind"] == config.kind


@pytest.mark.parametrize(
    "awkward",
    [
        "C:\\data\\x41",
        "no\u00a0break",
        "esc\x1b[0m",
        "del\x7f",
        "nul\x00",
        'quote"',
        "tab\tline\nfeed",
        "soft\u00ad\u0085",
        "line\nthen \\u00e9 and C:\\users",
    ],
)
def test_strings_reach_cosmos_rl_as_written(awkward: str) -> None:
    rendered = render(load_recipe(recipe("reason1_videophy2_sft.toml")))
    rendered["custom"]["cookbook"]["model"] = awkward
    rendered["custom"]["cookbook"]["tags"] = [awkward, "plain"]
    text = to_toml(rendered)
    # cosmos-rl reads its config with the toml package; any TOML 1.0 reader must read the same.
    assert toml.loads(text) == rendered
    assert tomllib.loads(text) == rendered


def test_a_config_cosmos_rl_would_misread_is_refused_when_planned_naming_why() -> None:
    rendered = render(load_recipe(recipe("reason1_videophy2_sft.toml")))
    rendered["train"]["optm_grad_norm_clip"] = float("nan")  # read back as NaN: no refusal
    assert math.isnan(toml.loads(to_toml(rendered))["train"]["optm_grad_norm_clip"])
    rendered["train"]["optm_betas"] = [0.9, 1]
    with pytest.raises(RenderError, match=r"^cosmos-rl's TOML reader .* cannot read .*: Not a homogeneous array"):
        to_toml(rendered)
    rendered["train"]["optm_betas"] = [0.9, 0.999]
    rendered["custom"]["no\u00a0break"] = 1  # the toml package writes this key as "noxa0break"
    with pytest.raises(RenderError, match=r"^cosmos-rl's TOML reader .* would read custom\.no.*break otherwise"):
        to_toml(rendered)
    del rendered["custom"]["no\u00a0break"]
    rendered["custom"]["cookbook"]["model"] = "esc\x1b then \\u00e9"  # the toml package's reader refuses this
    with pytest.raises(RenderError, match=r"^cosmos-rl's TOML reader .* cannot read .*: Reserved escape sequence"):
        to_toml(rendered)


def test_the_grpo_recipe_is_the_published_one() -> None:
    config = load_recipe(recipe("reason1_videophy2_grpo.toml"))
    assert isinstance(config, GRPOConfig)
    cosmos = validate_rendered(render(config))
    policy = cosmos.train.train_policy
    assert cosmos.rollout.n_generation == 8
    assert policy.kl_beta == 0.05
    assert cosmos.train.optm_lr == 2e-6
    assert policy.temperature == cosmos.rollout.sampling_config.temperature
    assert [term.name for term in config.rewards] == ["format", "score_accuracy"]
    functions = reward_functions(config)
    perfect = "<think>\nsmooth fall\n</think>\n\n<answer>\n4\n</answer>"
    assert total_reward(functions, perfect, "4") == (2.0, {"format": 1.0, "score_accuracy": 1.0})
    assert total_reward(functions, "<answer>\n3\n</answer>", "4")[0] == 0.5


def test_an_unknown_key_in_a_recipe_is_rejected_by_name(tmp_path: Path) -> None:
    text = recipe("reason1_videophy2_sft.toml").read_text()
    typo = tmp_path / "typo.toml"
    typo.write_text(text.replace("epochs = 2", "epocs = 2"))
    with pytest.raises(ValueError, match="epocs: Extra inputs are not permitted"):
        load_recipe(typo)
    nested = tmp_path / "nested.toml"
    nested.write_text(text + "tpp = 4\n")  # lands in the last table, [cosmos.policy]
    with pytest.raises(ValueError, match=r"cosmos\.policy\.tpp: Extra inputs"):
        load_recipe(nested)
    with pytest.raises(ValueError, match="kind: Input should be 'sft'"):
        resolve_config(SFTConfig, recipe("reason1_videophy2_grpo.toml"), None, {})


def test_set_overrides_and_cross_field_checks() -> None:
    path = recipe("reason1_videophy2_grpo.toml")
    config = load_recipe(path, ["num_generations=4", "cosmos.rollout.tp=2"])
    assert isinstance(config, GRPOConfig)
    assert config.num_generations == 4 and config.cosmos.rollout.tp == 2
    with pytest.raises(ValueError, match="multiple of num_generations"):
        load_recipe(path, ["num_generations=6"])
    with pytest.raises(ValueError, match="multiple of mini_batch"):
        load_recipe(path, ["mini_batch=7"])


def test_batch_size_is_shared_among_the_data_parallel_ranks() -> None:
    # cosmos-rl's SFT worker reads train_batch_per_replica samples on every data-parallel rank; GRPO's
    # controller shares it among them, and its policy workers refuse a share that is not whole mini-batches.
    sft = load_recipe(recipe("reason1_videophy2_sft.toml"), ["batch_size=32", "mini_batch=2"])
    assert sft.cosmos.policy.dp_shard == 8
    assert validate_rendered(render(sft)).train.train_batch_per_replica == 4
    replicated = load_recipe(
        recipe("reason1_videophy2_sft.toml"),
        ["mini_batch=2", "cosmos.policy.dp_shard=2", "cosmos.policy.dp_replicate=2"],
    )
    assert render(replicated)["train"]["train_batch_per_replica"] == 8
    grpo = load_recipe(recipe("reason1_videophy2_grpo.toml"))
    assert render(grpo)["train"]["train_batch_per_replica"] == grpo.batch_size
    with pytest.raises(ValueError, match=r"8 data-parallel ranks .* must be a multiple of 16"):
        load_recipe(recipe("reason1_videophy2_sft.toml"), ["batch_size=24", "mini_batch=2"])
    load_recipe(recipe("reason1_videophy2_sft.toml"), ["batch_size=24", "mini_batch=2", "backend=local"])
    assert grpo.cosmos.policy.data_parallel() == 4
    with pytest.raises(ValueError, match=r"4 data-parallel ranks .* must be a multiple of 64"):
        load_recipe(recipe("reason1_videophy2_grpo.toml"), ["batch_size=32", "mini_batch=16"])
    load_recipe(recipe("reason1_videophy2_grpo.toml"), ["batch_size=32", "mini_batch=8"])


def test_local_sft_refuses_a_gpu_index_its_trainer_would_ignore(tmp_path: Path) -> None:
    base = {"model": "some/model", "dataset": tmp_path, "output_dir": tmp_path, "lr": 1e-5}
    with pytest.raises(ValueError, match=r"local\.device 'cuda:1'.*CUDA_VISIBLE_DEVICES=1 and device 'cuda'"):
        SFTConfig(backend="local", local={"device": "cuda:1"}, **base)
    for device in ("auto", "cpu", "cuda", "cuda:0"):
        SFTConfig(backend="local", local={"device": device}, **base)
    SFTConfig(local={"device": "cuda:1"}, **base)  # the cosmos-rl backend does not read [local]
    GRPOConfig(backend="local", local={"device": "cuda:1"}, rewards=[{"name": "format"}], **base)  # its own loop


def rendered_with(path: Path, extra: dict[str, Any], sets: list[str] | None = None) -> dict[str, Any]:
    config = load_recipe(path, sets)
    config = config.model_copy(update={"cosmos": config.cosmos.model_copy(update={"extra": extra})})
    return render(config)


def test_keys_cosmos_rl_would_silently_ignore_are_refused() -> None:
    sft = recipe("reason1_videophy2_sft.toml")
    extra = rendered_with(sft, {"train.optm_warmup_start_factor": 0.1, "rollout.enforce_eager": False})
    validate_rendered(extra)  # real keys pass
    for key in ("train.optm_lrr", "policy.parallelism.tpsize", "train.train_policy.kl_beta", "logging.loger"):
        with pytest.raises(RenderError, match=key.replace(".", r"\.")):
            validate_rendered(rendered_with(sft, {key: 1}))


def test_extra_tables_set_their_keys_and_keep_the_rendered_ones(tmp_path: Path) -> None:
    def cosmos_keys(rendered: dict[str, Any]) -> dict[str, Any]:
        return {table: value for table, value in rendered.items() if table != "custom"}  # custom holds the recipe

    path = recipe("reason2_vqa_sft_lora.toml")
    dotted = cosmos_keys(rendered_with(path, {"validation.batch_size": 4}))
    assert dotted["validation"]["enable"] and "dataset" in dotted["validation"]
    # An unquoted dotted key in TOML, and --set, arrive as nested tables.
    toml = tmp_path / "extra.toml"
    toml.write_text(path.read_text() + "\n[cosmos.extra]\nvalidation.batch_size = 4\n")
    assert cosmos_keys(render(load_recipe(toml))) == dotted
    assert cosmos_keys(render(load_recipe(path, ["cosmos.extra.validation.batch_size=4"]))) == dotted
    assert cosmos_keys(rendered_with(path, {"validation": {"batch_size": 4}})) == dotted
    assert validate_rendered(dotted).validation.freq == 100


def test_unknown_keys_follows_cosmos_rl_models_and_their_unions() -> None:
    from cosmos_rl.policy.config import Config

    data = {
        "train": {"train_policy": {"type": "grpo", "kl_beta": 0.1, "kl_betta": 0.1}, "ckpt": {"save_frq": 1}},
        "custom": {"anything": {"goes": 1}},
        "polcy": {},
    }
    assert sorted(unknown_keys(data, Config)) == ["polcy", "train.ckpt.save_frq", "train.train_policy.kl_betta"]


def test_invariants_hold_whatever_extra_says() -> None:
    grpo = recipe("reason1_videophy2_grpo.toml")
    with pytest.raises(RenderError, match="temperature"):
        validate_rendered(rendered_with(grpo, {"rollout.sampling_config.temperature": 0.5}))
    with pytest.raises(RenderError, match=r"train\.compile must be false"):
        validate_rendered(rendered_with(grpo, {"train.compile": True}))
    # cosmos-rl's own validators run too: GRPO with LoRA needs tensor parallelism 1.
    with pytest.raises(RenderError, match="tp_size == 1"):
        validate_rendered(rendered_with(grpo, {}, ["lora.rank=8", "cosmos.policy.tp=2"]))


def test_a_missing_video_far_into_the_dataset_is_found_before_launch(datasets: Any, tmp_path: Path) -> None:
    from datasets import DatasetDict, concatenate_datasets, load_from_disk

    built = datasets("sft", "reason1")
    train = load_from_disk(str(built))["train"]
    last = train[0]
    last["id"], last["conversations"] = "gone", last["conversations"].replace(".mp4", "-missing.mp4")
    rows = concatenate_datasets([train] * 40 + [train.from_list([last])])
    folder = tmp_path / "dataset"
    DatasetDict({"train": rows}).save_to_disk(str(folder))
    (folder / "build_info.json").write_text((built / "build_info.json").read_text())
    config = SFTConfig(dataset=folder, output_dir=tmp_path / "run", lr=1e-5, arch="reason1", model="some/model")
    with pytest.raises(DatasetError, match=r"row 120 \(id 'gone'\): video .*-missing\.mp4 does not exist"):
        check_dataset(config)


def test_references_the_rewards_cannot_read_are_found_before_launch(datasets: Any, tmp_path: Path) -> None:
    base = {"dataset": datasets("rl", "reason1"), "output_dir": tmp_path, "lr": 1e-5, "arch": "reason1"}
    scores = GRPOConfig(model="some/model", rewards=[{"name": "format"}, {"name": "score_accuracy"}], **base)
    choices = GRPOConfig(model="some/model", rewards=[{"name": "format"}, {"name": "choice_accuracy"}], **base)

    assert check_dataset(scores).rows["train"] == 3  # VideoPhy-2 scores as references
    with pytest.raises(DatasetError, match=r"row 0 \(id .*\): reward 'choice_accuracy' cannot use its reference: .*"):
        check_dataset(choices)


def test_datasets_are_checked_against_the_recipe(datasets: Any, tmp_path: Path) -> None:
    base = {"output_dir": tmp_path, "lr": 1e-5, "arch": "reason1", "model": "some/model"}
    summary = check_dataset(SFTConfig(dataset=datasets("sft", "reason1"), **base))
    assert summary.rows == {"train": 3} and summary.build.kind == "sft"
    with pytest.raises(DatasetError, match="SFT needs one written by build-sft"):
        check_dataset(SFTConfig(dataset=datasets("rl", "reason1"), **base))
    grpo = GRPOConfig(dataset=datasets("sft", "reason1"), rewards=[{"name": "format"}], **base)
    with pytest.raises(DatasetError, match="a build-sft dataset; GRPO needs one written by build-rl"):
        check_dataset(grpo)
    with pytest.raises(DatasetError, match="patch factor 32"):
        check_dataset(SFTConfig(dataset=datasets("sft", "reason1"), **{**base, "arch": "reason2"}))
    with pytest.raises(DatasetError, match="split 'val' is empty"):
        check_dataset(SFTConfig(dataset=datasets("sft", "reason1"), validate_every=10, **base))


@pytest.mark.parametrize(
    ("kind", "arch", "row", "name"), [("sft", "reason1", 2, "mpeg4_8fps"), ("rl", "reason2", 1, "h264_portrait_15fps")]
)
def test_a_row_whose_text_fills_max_length_is_refused_before_launch_when_the_model_is_local(
    tiny_checkpoints: Any, datasets: Any, with_long_text: Any, tmp_path: Path, kind: str, arch: str, row: int, name: str
) -> None:
    dataset = with_long_text(datasets(kind, arch), tmp_path / "dataset", row)
    base = {"model": str(tiny_checkpoints(arch)), "dataset": dataset, "output_dir": tmp_path / "run", "lr": 1e-5}
    config: TrainConfig = (
        SFTConfig(max_length=321, **base)
        if kind == "sft"
        else GRPOConfig(max_length=321, max_response_length=16, rewards=[{"name": "format"}], **base)
    )
    message = rf"split 'train': 1 row\(s\) exceed max_length 321 in tokens .*: row {row} \(id '{name}'\) \d+; raise"
    with pytest.raises(DatasetError, match=message):
        check_dataset(config)
    roomy = check_dataset(config.model_copy(update={"max_length": 4096}))  # the long row then fits
    assert roomy.rows == {"train": 3} and roomy.unchecked == 0


def test_rows_a_hub_model_s_tokenizer_would_have_to_count_are_reported_not_fetched(
    monkeypatch: pytest.MonkeyPatch, datasets: Any, with_long_text: Any, tmp_path: Path
) -> None:
    from transformers import AutoProcessor

    def fetch(*args: object, **kwargs: object) -> None:
        raise AssertionError("a processor was loaded to check text lengths")

    monkeypatch.setattr(AutoProcessor, "from_pretrained", fetch)
    dataset = with_long_text(datasets("sft", "reason1"), tmp_path / "dataset", 2)
    base = {"model": "some/model", "arch": "reason1", "dataset": dataset, "output_dir": tmp_path, "lr": 1e-5}
    local = check_dataset(SFTConfig(backend="local", max_length=321, **base))
    assert local.unchecked == 1  # the two short rows are cleared by their bytes
    assert "1 row(s) not checked against max_length" in local.describe()
    assert "the local trainer checks them before its first step" in local.describe()
    cosmos = check_dataset(SFTConfig(backend="cosmos-rl", max_length=321, **base))
    assert "cosmos-rl would cut an over-long one at its end" in cosmos.describe()
    assert check_dataset(SFTConfig(max_length=4096, **base)).unchecked == 0


def test_a_hub_model_in_the_hugging_face_cache_counts_the_rows_from_its_snapshot(
    monkeypatch: pytest.MonkeyPatch, tiny_checkpoints: Any, datasets: Any, with_long_text: Any, tmp_path: Path
) -> None:
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_checkpoints("reason1"), snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    dataset = with_long_text(datasets("sft", "reason1"), tmp_path / "dataset", 2)
    config = SFTConfig(model="acme/tiny", arch="reason1", dataset=dataset, output_dir=tmp_path, lr=1e-5, max_length=321)
    started = time.monotonic()
    with pytest.raises(DatasetError, match=r"1 row\(s\) exceed max_length 321 .*: row 2 \(id 'mpeg4_8fps'\)"):
        check_dataset(config)
    assert time.monotonic() - started < 10  # the hub is not asked (offline, each file would be retried for a minute)

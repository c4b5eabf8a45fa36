"""Local GRPO (our loop: sampling, rewards, group advantages, clipped policy gradient, KL) raises the reward."""

from pathlib import Path
from typing import Any

import pytest

from cookbook_data.records import JsonlWriter, read_records
from cookbook_infer.backends.base import SamplingSettings
from cookbook_infer.backends.transformers import TransformersBackend
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_train.config import GRPOConfig
from cookbook_train.data import DatasetError, load_split, parse_conversation, split_target
from cookbook_train.local._model import METRICS, StepMetrics
from cookbook_train.local.grpo import GRPOLoop, train_grpo_local


def test_grpo_raises_the_mean_reward_for_emitting_a_chosen_token(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, tmp_path: Path
) -> None:
    model = str(tiny_checkpoints("reason2"))
    dataset = datasets("rl", "reason2")
    # The reward: start the answer with the token the untrained model finds likeliest first. Sampling among the
    # two likeliest tokens, about half the completions earn it at first; GRPO must make it the habit.
    prompt = split_target(parse_conversation(load_split(dataset, "train")[0]["conversations"]))[0]
    base = TransformersBackend(model)
    target = base.generate([prompt], SamplingSettings(temperature=0, max_new_tokens=1))[0].text
    before = base.next_token_probabilities([prompt], [target])[0].mass

    def starts_with_target(
        completion: str, reference: object = None, **kwargs: object
    ) -> tuple[float, dict[str, float]]:
        reward = float(completion.startswith(target))
        return reward, {"target": reward}

    config = GRPOConfig(
        backend="local",
        model=model,
        dataset=dataset,
        output_dir=tmp_path / "run",
        rewards=[{"name": "format"}],
        lr=5e-3,
        lr_schedule="constant",
        weight_decay=0.0,
        epochs=5,  # two steps each: three prompts, two a step
        max_steps=8,
        batch_size=16,
        mini_batch=8,
        num_generations=8,
        top_k=2,
        max_response_length=4,
        kl_beta=0.0,
        gradient_checkpointing=False,
        save_every=4,
        local={"device": "cpu"},
    )
    result = train_grpo_local(config, rewards=[(starts_with_target, 1.0)])
    logged = list(read_records(tmp_path / "run" / METRICS, StepMetrics))
    assert logged == result.metrics
    assert [line.step for line in logged] == list(range(1, 9))
    lines = [line.values for line in logged]
    assert all(line["completion_length"] <= 4 and line["reward/starts_with_target"] == line["reward"] for line in lines)
    rewards = [line["reward"] for line in lines]
    assert sum(rewards[-3:]) / 3 > rewards[0] + 0.2, rewards
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_4", "step_8"]
    # The exported policy puts more probability on the rewarded first token than the initial one did.
    after = TransformersBackend(str(result.final)).next_token_probabilities([prompt], [target])[0].mass
    assert after > 2 * before, (before, after)

    # A rerun finds the last checkpoint and has nothing left to do; lines of steps after that checkpoint (as a
    # longer run leaves when stopped before its next checkpoint) are dropped, the resumed run logs them anew.
    with JsonlWriter(tmp_path / "run" / METRICS, StepMetrics) as writer:
        writer.write(StepMetrics(step=9, values={"reward": 0.0}))
    again = train_grpo_local(config, rewards=[(starts_with_target, 1.0)])
    assert again.resumed_from == tmp_path / "run" / "checkpoints" / "step_8" and again.metrics == []
    assert list(read_records(tmp_path / "run" / METRICS, StepMetrics)) == logged

    # A rerun that plans more steps on a decaying schedule is refused: it cannot stretch from 8 steps to 10.
    longer = config.model_copy(update={"max_steps": 10, "lr_schedule": "cosine"})
    with pytest.raises(
        ValueError,
        match=r"step_8: trained for 8 steps, and this run plans 10 .* cannot stretch a cosine learning-rate schedule",
    ):
        train_grpo_local(longer, rewards=[(starts_with_target, 1.0)])
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_4", "step_8"]


def test_a_prompt_leaving_too_little_room_for_the_answer_stops_the_run_before_its_first_step(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, with_long_text: Any, tmp_path: Path
) -> None:
    config = GRPOConfig(
        backend="local",
        model=str(tiny_checkpoints("reason2")),
        dataset=with_long_text(datasets("rl", "reason2"), tmp_path / "dataset", 1),
        output_dir=tmp_path / "run",
        rewards=[{"name": "format"}],
        lr=1e-3,
        batch_size=2,
        mini_batch=2,
        num_generations=2,
        max_response_length=16,
        max_length=321,
        local={"device": "cpu"},
    )
    message = r"1 row\(s\) exceed max_length 321 in tokens \(video included, with max_response_length 16\): row 1 "
    with pytest.raises(DatasetError, match=message + r"\(id 'h264_portrait_15fps'\) \d+;"):
        GRPOLoop(config)
    assert GRPOLoop(config.model_copy(update={"max_length": 4096})).steps_per_epoch == 3

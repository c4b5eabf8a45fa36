"""The GRPO reward functions a recipe names, with their weights, in the form each backend calls them.

Both backends score a completion with the same pure functions of :mod:`cookbook_reward.rewards`
(``fn(completion, reference, **kwargs) -> (reward, metrics)``): cosmos-rl takes the ``(fn, weight)`` list as it is
and sums the weighted rewards itself; the local trainer calls :func:`total_reward`, which does the same sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cookbook_reward.rewards import (
    RewardFn,
    choice_accuracy_reward,
    format_reward,
    score_accuracy_reward,
    trajectory_reward,
)
from cookbook_train.config import GRPOConfig, RewardName

REWARD_FUNCTIONS: dict[RewardName, RewardFn] = {
    "format": format_reward,
    "score_accuracy": score_accuracy_reward,
    "choice_accuracy": choice_accuracy_reward,
    "trajectory": trajectory_reward,
}
"""The function behind each reward name a recipe may use."""

WeightedReward = tuple[RewardFn, float]


def reward_functions(config: GRPOConfig) -> list[WeightedReward]:
    """``(fn, weight)`` for every reward of the recipe, in order (cosmos-rl's ``reward_fns`` form)."""
    return [(REWARD_FUNCTIONS[term.name], term.weight) for term in config.rewards]


def reward_name(fn: RewardFn) -> str:
    """The name metrics are logged under: the function's name without a ``_reward`` suffix."""
    return str(getattr(fn, "__name__", "reward")).removesuffix("_reward")


def total_reward(
    rewards: Sequence[WeightedReward], completion: str, reference: object, **kwargs: Any
) -> tuple[float, dict[str, float]]:
    """The weighted sum of the rewards of one completion and each function's own reward by name."""
    total = 0.0
    parts: dict[str, float] = {}
    for fn, weight in rewards:
        result = fn(completion, reference, **kwargs)
        value = float(result[0] if isinstance(result, tuple) else result)
        parts[reward_name(fn)] = value
        total += weight * value
    return total, parts

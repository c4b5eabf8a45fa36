"""``cookbook-reward``: Reason-as-Reward scorers, GRPO rewards, a reward service, a trajectory verifier."""

from __future__ import annotations

from cookbook_data.clikit import make_app, run_app

app = make_app(
    "cookbook-reward",
    "Reason-as-Reward scorers, GRPO rewards, a reward service, a trajectory verifier.",
)


def main() -> None:
    run_app(app, "cookbook-reward")

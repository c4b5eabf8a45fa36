"""``cookbook-train``: SFT and GRPO post-training of Cosmos Reason models through cosmos-rl."""

from __future__ import annotations

from cookbook_data.clikit import make_app, run_app

app = make_app("cookbook-train", "SFT and GRPO post-training of Cosmos Reason models through cosmos-rl.")


def main() -> None:
    run_app(app, "cookbook-train")

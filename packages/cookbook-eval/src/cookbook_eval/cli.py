"""``cookbook-eval``: VideoPhy-2 metrics, FID/FVD, Sampson geometric consistency, reports."""

from __future__ import annotations

from cookbook_data.clikit import make_app, run_app

app = make_app("cookbook-eval", "VideoPhy-2 metrics, FID/FVD, Sampson geometric consistency, reports.")


def main() -> None:
    run_app(app, "cookbook-eval")

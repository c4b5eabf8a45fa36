"""The single-machine backend (``--backend local``): SFT and GRPO on CPU or one GPU, from the same recipe,
datasets and reward functions as the cosmos-rl backend, with videos fed exactly as inference feeds them."""

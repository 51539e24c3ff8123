"""Stages 2 and 3: SFT and GRPO with trl, in this process or under `accelerate launch`."""

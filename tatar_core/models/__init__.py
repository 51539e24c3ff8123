"""Model folders: loading (local checkpoints and the embedded models of `tatar_core.demo`), LoRA, the draft corpus."""

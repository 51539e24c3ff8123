"""Model folders: loading, the image-only Qwen2.5-VL processor, the embedded tiny model, the draft corpus."""

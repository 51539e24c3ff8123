"""Stage 1: teacher rationales (offline teacher or an OpenAI-compatible endpoint), resumable shards."""

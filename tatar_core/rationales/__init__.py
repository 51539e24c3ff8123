"""Stage 1: teacher rationales (an OpenAI-compatible endpoint, or the offline teacher of `tatar_core.demo`),
resumable shards."""

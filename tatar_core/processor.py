"""The image-only Qwen2.5-VL processor, registered with `AutoProcessor`.

transformers 5 needs torchvision for every *video* processor, and `Qwen2_5_VLProcessor(..., video_processor=None)`
fails its type check; without a registered processor `AutoProcessor.from_pretrained` silently returns a bare
tokenizer and images are ignored. Importing this module registers `ImageOnlyQwen2_5_VLProcessor`.
"""

from __future__ import annotations

from transformers import AutoProcessor, ProcessorMixin, Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without a video processor (ProcessorMixin reads sub-processors from this signature)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.image_token
        )
        self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.video_token
        )
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


_registered = False


def register_processor() -> None:
    """Register `ImageOnlyQwen2_5_VLProcessor` for Qwen2.5-VL configs with AutoProcessor (idempotent)."""
    global _registered
    if _registered:
        return
    AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)
    import transformers

    # AutoProcessor also resolves saved `processor_class` names through the transformers namespace
    if not hasattr(transformers, ImageOnlyQwen2_5_VLProcessor.__name__):
        setattr(transformers, ImageOnlyQwen2_5_VLProcessor.__name__, ImageOnlyQwen2_5_VLProcessor)
    _registered = True


register_processor()

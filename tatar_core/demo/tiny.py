"""The embedded model: a tiny Qwen2.5-VL-architecture VLM built offline and deterministically.

`build_tiny_model(out_dir, seed)` writes a normal `from_pretrained` folder:

- weights: `Qwen2_5_VLForConditionalGeneration` (text: hidden 128, 2 layers, 4 heads / 2 KV heads, head_dim 32,
  mrope_section [4, 6, 6]; vision: depth 2, hidden 64, patch 14, spatial merge 2, temporal patch 2, window 112),
  1.34 M parameters. The language side is random-init from `torch.manual_seed(seed)`; the vision tower gets the
  hand-set weights of `tatar_core.demo.tower` (fixed image-quality features: a stand-in for the
  pretrained tower a real backbone brings; a random-init tower does not learn low-level statistics on a CPU in
  minutes). Same seed -> byte-identical `model.safetensors`. Hidden 128 (not 64): measured on 32 synthetic rows, 120
  SFT
  steps at lr 3e-3 reach loss 0.12 and 32/32 well-formed answers, where hidden 64 stalls at 0.5 with broken numbers.
- tokenizer: a byte-level BPE (vocab `VOCAB_SIZE`) trained on `tokenizer_corpus()`, a fixed text built from the
  project prompts, IQA/IAA vocabulary, common English and score numbers ("73.42"); Qwen2 pre-tokenizer regex
  but digits grouped up to three ("73.42" -> "73" "." "42"). Special tokens are the Qwen ones; `<think>`,
  `</think>`, `<answer>`, `</answer>` are added (non-special, so decoding with skip_special_tokens keeps them).
  eos `<|im_end|>`, pad `<|endoftext|>`, left padding, the Qwen2-VL chat template (trl's copy). The tokenizer
  does not depend on the seed; a ~130-word IAA answer is ~175 tokens.
- processor: `ImageOnlyQwen2_5_VLProcessor` (no video processor, hence no torchvision) with
  `tatar_core.demo.view.QualityViewImageProcessor`: at `max_pixels` 112×112, 16 tokens of native-resolution
  fragments and up to 16 of the downscaled whole image, whatever the image size.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

from tatar_core.method.prompts import SPECIAL_TAGS, SYSTEM_PROMPT, TASK_TEXT, make_target

VOCAB_SIZE = 3072
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
EOS_TOKEN, PAD_TOKEN = "<|im_end|>", "<|endoftext|>"
# Qwen2's pre-tokenizer split (contractions, letter runs, punctuation runs, whitespace), except that digits are
# grouped up to three (Qwen splits them one by one): "73.42" -> "73" "." "42", a shape a tiny model learns quickly.
PRETOKENIZE_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PATCH, MERGE, TEMPORAL = 14, 2, 2
DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS = 28 * 28, 112 * 112

TEXT_CONFIG = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    use_sliding_window=False,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]},
)
VISION_CONFIG = dict(
    depth=2,
    hidden_size=64,
    intermediate_size=128,
    num_heads=4,
    in_channels=3,
    patch_size=PATCH,
    spatial_merge_size=MERGE,
    temporal_patch_size=TEMPORAL,
    window_size=112,
    out_hidden_size=TEXT_CONFIG["hidden_size"],
    fullatt_block_indexes=[1],
    tokens_per_second=2,
)

# Domain vocabulary: image quality (technical) and aesthetics (narrative) words and phrases.
IQA_WORDS = """
image quality technical sharpness sharp blur blurry blurred softness soft focus defocus motion smear ghosting noise
noisy grain grainy speckle impulse salt pepper compression compressed artifact artifacts artefacts blockiness blocky
blocks ringing banding jpeg jpeg2000 wavelet quantization pixelation pixelated pixelate mosaic exposure exposed
underexposed overexposed underexposure overexposure dark darkened darkening bright brightened brightness highlights
shadows clipped clipping crushed washed out contrast flat faded dull colour color colours colors colourfulness
colorfulness saturation saturated desaturated cast tint hue fidelity detail details texture textures edges edge
fine crisp clean clear clarity resolution degraded degradation distortion distortions distorted severe severely
mild mildly moderate moderately slight slightly strong strongly heavy heavily visible visibly noticeable barely
obvious dominant factor factors pristine intact acceptable poor excellent good fair bad decent reasonable
well preserved lost loss damage damaged smooth smoothed gradient gradients halo halos jagged aliasing luminance
chroma sensor camera lens shake focus
"""
IAA_WORDS = """
aesthetic aesthetics appeal appealing beauty beautiful composition composed framing frame framed balance balanced
unbalanced symmetry symmetric asymmetry layout structure alignment spacing rule thirds horizon tilt tilted level
centred centered center centre subject subjects foreground background depth space negative lines leading shapes
shape texture palette harmony harmonious cohesive coherent coherence unity holistic gestalt overall lighting light
shadow shadows warm cool vivid muted vibrant soft mood moody atmosphere emotion emotional feeling evoke evokes
evocative impact resonance viewer viewers calm tension serene dramatic nostalgic joyful melancholy originality
original creative creativity novel unique generic derivative innovative theme story narrative message
communication concept context cultural execution polish polished refined rendering blending clarity quality
evaluation rating score impression presentation portrait landscape cat astronaut coffee rocket motorcycle flower
temple building sky cup face person figure animal scene photograph photo photographer crop cropped cropping corner
vignette vignetting squashed stretched padded border blotch blotchy washed distracting distraction clutter
cluttered simple simplicity minimal elegant elegance striking engaging inviting pleasant pleasing unpleasant awkward
weak strong compelling memorable ordinary everyday style stylistic artistic intention intent deliberate careful
careless placement placed sits draws guides eye attention interest visual elements element gaze
"""
COMMON_WORDS = """
the a an and or but of to in on at by for with without from into onto over under above below between through
across along around about against toward towards than then so as if while because although though yet still
this that these those it its it's there here which who whom whose what where when why how all any each every
some many much more most less least few several both either neither no not only also even just very quite rather
too enough almost nearly fully partly largely mostly generally overall somewhat is are was were be been being has
have had do does did can could may might must should would will shall seems seem appears appear looks look feel
feels remains remain stays keeps makes make gives give shows show suggests suggest creates create adds add reduces
reduce lowers lower raises raise limits limit supports support holds hold lacks lack reveals reveal conveys convey
offers offer leaves leave brings bring pulls pull pushes push helps help hurts hurt undermines undermine enhances
enhance weakens weaken strengthens strengthen reinforces reinforce rewards reward we one two three image's photo's
scene's high higher highest low lower lowest large larger small smaller little big great greater clear clearer
clean cleaner good better best bad worse worst new old natural real true rich pale deep bright dark light heavy
sharp soft fine coarse rough smooth strong weak main key central left right top bottom side sides edge middle whole
part parts area areas region regions surface surfaces frame corner corners point points way ways level levels
amount degree kind kinds sort type types form forms result results effect effects sense impression nothing
something everything anything little while whereas however therefore thus instead moreover furthermore meanwhile
finally first second third last next together apart within beyond despite during before after since until upon
viewer's eye's its their they them he she his her our us you your i my me
"""
PHRASES = (
    "The image is sharp and clean with fine detail preserved.",
    "Heavy blur softens every edge and removes fine texture.",
    "Visible noise and grain cover flat regions of the frame.",
    "Strong compression leaves blocky artifacts and ringing around edges.",
    "The exposure is balanced, with no clipped highlights or crushed shadows.",
    "The image is underexposed, so shadow detail is lost in darkness.",
    "Low contrast makes the picture look flat and washed out.",
    "Colours are natural and well saturated.",
    "The composition follows the rule of thirds and the subject sits off centre.",
    "Soft warm lighting creates a calm and inviting mood for the viewer.",
    "Colour harmony and balance give the scene a cohesive overall gestalt.",
    "The theme is communicated clearly and the story feels original.",
    "Technical execution is polished, with refined rendering and clarity.",
    "A tilted horizon and awkward crop weaken the structure of the frame.",
    "The emotional impact is modest, and the overall aesthetic appeal is moderate.",
    "Overall, the aesthetic quality is high and the rating reflects it.",
)


def _number_strings(rng: random.Random) -> list[str]:
    """Score formats: every integer 0–100, 'NN.NN' with two decimals, plus random scores."""
    out = [str(i) for i in range(101)] + [f"{i}.00" for i in range(101)]
    out += [f"{rng.uniform(0, 100):.2f}" for _ in range(400)]
    return out


def tokenizer_corpus() -> list[str]:
    """The fixed training text for the BPE (same on every machine, no seed dependence)."""
    rng = random.Random(20260)
    words = sorted(set((IQA_WORDS + IAA_WORDS + COMMON_WORDS).split()))
    lines: list[str] = [SYSTEM_PROMPT, *TASK_TEXT.values(), *PHRASES]
    # each word alone (lower and capitalised) with a leading space, several times, so words become single tokens
    for w in words:
        lines.append(" ".join([w, w.capitalize()] * 3))
    # pseudo-sentences mixing the vocabulary, and full targets with tags and scores
    for _ in range(1500):
        sent = " ".join(rng.choice(words) for _ in range(rng.randint(6, 18)))
        lines.append(sent.capitalize() + rng.choice([".", ",", ";", "."]))
    numbers = _number_strings(rng)
    for _ in range(300):
        phrase = rng.choice(PHRASES)
        lines.append(make_target(phrase, float(rng.choice(numbers[202:]))))
        lines.append(make_target("", float(rng.choice(numbers[202:]))))
    lines += numbers
    lines.append(" ".join(SPECIAL_TAGS))
    return lines


def train_bpe() -> str:
    """Train the byte-level BPE on `tokenizer_corpus()` (≈5 s); returns the `tokenizers` JSON."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in SPECIAL_TAGS])
    return tok.to_str()


@functools.lru_cache(maxsize=1)
def _bpe_json() -> str:
    return train_bpe()


def build_tokenizer():
    """The tiny model's tokenizer as a transformers fast tokenizer (BPE trained once per process, then cached)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_bpe_json()),
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
        additional_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)],
        padding_side="left",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = qwen2_5_vl_chat_template
    return fast


def build_processor(tokenizer, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Image-only Qwen2.5-VL processor (no video processor -> no torchvision) whose image processor gives the tower
    a native-resolution quality view beside a downscaled global view (`tatar_core.demo.view`)."""
    from tatar_core.demo.view import QualityViewImageProcessor
    from tatar_core.processor import ImageOnlyQwen2_5_VLProcessor

    image_processor = QualityViewImageProcessor(
        patch_size=PATCH,
        merge_size=MERGE,
        temporal_patch_size=TEMPORAL,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )
    return ImageOnlyQwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template
    )


def build_model_config(tokenizer, vocab_size: int | None = None):
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    vocab = vocab_size or len(tokenizer)
    text = dict(
        TEXT_CONFIG,
        vocab_size=vocab,
        bos_token_id=ids[PAD_TOKEN],
        eos_token_id=ids[EOS_TOKEN],
        pad_token_id=ids[PAD_TOKEN],
    )
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(VISION_CONFIG),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    # generation/training code reads these at the top level too
    cfg.eos_token_id = ids[EOS_TOKEN]
    cfg.pad_token_id = ids[PAD_TOKEN]
    cfg.bos_token_id = ids[PAD_TOKEN]
    return cfg


def build_tiny_model(
    out_dir: Path, seed: int = 0, tokenizer=None, vocab_size: int | None = None, analytic_tower: bool = True
) -> Path:
    """Build the tiny model + tokenizer + processor into `out_dir` (created). Same seed -> identical weights.

    `tokenizer` (default `build_tokenizer()`) and `vocab_size` (embedding rows, default len(tokenizer)) give a
    variant with another vocabulary (e.g. tatar_core.demo.qwen_vocab, Qwen2.5-VL's own). `analytic_tower=False`
    keeps the random-init vision tower (the control of the learning test)."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    config = build_model_config(tokenizer, vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    if analytic_tower:
        from tatar_core.demo.tower import install_analytic_tower

        install_analytic_tower(model, seed)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        do_sample=False,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    processor = build_processor(tokenizer)
    processor.save_pretrained(out_dir)
    (out_dir / "tatar_tiny_model.json").write_text(
        json.dumps(
            {
                "builder": "tatar_core.demo.tiny",
                "seed": seed,
                "vocab_size": len(tokenizer),
                "vision_tower": "analytic" if analytic_tower else "random",
            },
            indent=1,
        )
    )
    return out_dir


__all__ = ["build_tiny_model", "build_tokenizer", "train_bpe", "build_processor", "tokenizer_corpus", "VOCAB_SIZE"]

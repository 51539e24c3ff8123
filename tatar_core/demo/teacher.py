"""The embedded offline teacher: measures the image and writes a grounded rationale that ends in the known score.

IQA (fast): exactly two sentences, 30–50 words. The 1–2 dominant technical factors come from the measurements
(`technical_factors`: blur, motion blur, noise, impulse specks, compression blocking, pixelation, dark/bright
exposure, low contrast, faded colour, each with a 0–1 severity from calibrated ramps); the severity words and the
verdict come from the score band (≥ 80 clean, 60–80 mild, 40–60 moderate, 20–40 strong, < 20 severe).
IAA (slow): a ~100-word narrative (90–130) over composition, visual elements, light/colour, technical execution,
theme, emotion, originality and overall appeal, covering ≥ 5 of the 8 keyword groups of `tatar_core.method.aspects`.
Measured
cues (bars, tilt, off-centre weight, colour blotch, darkness, washed-out tones, vignetting, palette, detail,
warmth) choose the claims; the score band chooses their tone and the verdict. With ArtiMuse-style `attributes`
(JSON of per-aspect texts), short excerpts of those texts are woven into the narrative instead.
`TeacherConfig.style` picks the style per task (default IQA fast, IAA slow): slow IQA is the same narrative judged on
technical quality (`same_style`, the no-fast/slow ablation); fast IAA is two sentences, 30–50 words: the most telling
measured aesthetic cue (or the first attribute text) and the overall verdict (the reasoning probe's short IAA think).

No number ever appears in a rationale. Wording varies deterministically by sample_id (several templates per slot).
The ramp thresholds were calibrated on the demo set (tatar_core.demo.data) at 128 px.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Optional, Sequence

from data_contracts.config.rationales import SLOW_BOTH, RationaleStyles, TeacherConfig
from data_contracts.records import RationaleRecord, SampleRecord
from tatar_core.demo.measure import Measurements, measure_image
from tatar_core.method.aspects import covered_aspects
from tatar_core.method.parsing import count_words
from tatar_core.method.prompts import make_target

TEACHER_VERSION = "offline-v1"
IQA_WORDS = (30, 50)
IAA_WORDS = (90, 130)
DEFAULT_STYLES = RationaleStyles().model_dump()
ATTRIBUTE_ORDER = (
    "visual_elements",
    "composition_structure",
    "overall_gestalt",
    "technical_execution",
    "theme_communication",
    "emotion_viewer_response",
    "originality_creativity",
    "overall_evaluation",
)


# ------------------------------------------------------------------------------------------ helpers
class _Picker:
    """Deterministic choice among variants, keyed by (sample key, slot, attempt)."""

    def __init__(self, key: str, attempt: int = 0):
        self.key, self.attempt = key, attempt

    def __call__(self, slot: str, options: Sequence):
        h = hashlib.sha256(f"{self.key}\x1f{slot}\x1f{self.attempt}".encode()).digest()
        return options[int.from_bytes(h[:4], "little") % len(options)]


def _ramp(x: float, zero: float, one: float) -> float:
    """0 at `zero`, 1 at `one`, linear between, clamped (works for falling ramps too)."""
    t = (x - zero) / (one - zero)
    return 0.0 if t <= 0 else 1.0 if t >= 1 else float(t)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _band(score: float) -> int:
    """0 = excellent (≥ 80), 1 = good (60–80), 2 = fair (40–60), 3 = poor (20–40), 4 = bad (< 20)."""
    return 0 if score >= 80 else 1 if score >= 60 else 2 if score >= 40 else 3 if score >= 20 else 4


def _iaa_band(score: float) -> int:
    """0 ≥ 85, 1 = 70–85, 2 = 55–70, 3 = 40–55, 4 = 25–40, 5 < 25."""
    for i, lim in enumerate((85, 70, 55, 40, 25)):
        if score >= lim:
            return i
    return 5


# ------------------------------------------------------------------------------- technical factors
@dataclass(frozen=True)
class Factor:
    name: str
    severity: float  # 0 (absent) .. 1 (severe)


def technical_factors(m: Measurements) -> list[Factor]:
    """Technical degradations with severities in [0, 1], most severe first.

    Ramps (value at severity 0 → 1): blur sharpness 2.6 → 0.6; motion = blur ramp 2.7 → 1.4 gated by
    directional_blur 0.45 → 0.9; noise σ 4 → 20; impulses 0.0005 → 0.03; blocking blockiness 1.15 → 3 (or flat
    8×8 grid ≥ 3 with flat_fraction); pixelation flat_fraction 0.25 → 0.8; dark brightness 0.28 → 0.10; bright
    0.70 → 0.88 (or clipped highlights 0.05 → 0.3); low contrast RMS 0.15 → 0.05; faded colour colourfulness
    30 → 3.
    """
    noise = _ramp(m.noise_sigma, 4.0, 20.0)
    impulse = _ramp(m.impulse_fraction, 0.0005, 0.03)
    blur = _ramp(m.sharpness, 2.6, 0.6)
    motion = _ramp(m.sharpness, 2.7, 1.4) * _ramp(m.directional_blur, 0.45, 0.9)
    if motion > 0:
        blur = blur * (1.0 - _ramp(m.directional_blur, 0.45, 0.9))
    pixel = _ramp(m.flat_fraction, 0.25, 0.8)
    block = _ramp(m.blockiness, 1.15, 3.0)
    if block > pixel and m.flat_fraction > 0.6 and m.blockiness < 1.5:
        block = 0.0
    if pixel > 0 and block > 0:  # one blocky family: name the stronger one
        if pixel >= block:
            block = 0.0 if m.blockiness > 5 else block * 0.5
        else:
            pixel *= 0.5
    dark = _ramp(m.brightness, 0.28, 0.10)
    bright = max(_ramp(m.brightness, 0.70, 0.88), _ramp(m.bright_clip, 0.05, 0.30))
    low_contrast = _ramp(m.contrast, 0.15, 0.05)
    faded = _ramp(m.colourfulness, 30.0, 3.0)
    fs = [
        Factor("blur", blur),
        Factor("motion", motion),
        Factor("noise", noise),
        Factor("impulse", impulse),
        Factor("blocking", block),
        Factor("pixelation", pixel),
        Factor("dark", dark),
        Factor("bright", bright),
        Factor("low_contrast", low_contrast),
        Factor("faded", faded),
    ]
    return sorted(fs, key=lambda f: (-f.severity, f.name))


# noun phrase + what it does, in matching grammatical number ("which …")
_FACTOR_TEXT: dict[str, tuple[tuple[str, str], ...]] = {
    "blur": (
        ("blur", "smears fine edges and textures"),
        ("softness from lost focus", "leaves edges indistinct"),
        ("out-of-focus blur", "washes away fine detail"),
    ),
    "motion": (
        ("directional motion blur", "drags edges sideways into streaks"),
        ("horizontal smearing", "stretches outlines into streaks"),
        ("streaking motion blur", "doubles and smears the edges along one direction"),
    ),
    "noise": (
        ("grainy noise", "covers smooth areas with a busy speckle"),
        ("random sensor-like noise", "breaks up flat regions and fine texture"),
        ("coarse grain", "makes smooth surfaces look rough and speckled"),
    ),
    "impulse": (
        ("scattered black and white specks", "pepper the scene like dust"),
        ("salt-and-pepper dots", "sprinkle isolated bright and dark points everywhere"),
        ("isolated impulse specks", "stand out against smooth areas"),
    ),
    "blocking": (
        ("blocky compression artefacts", "chop smooth gradients into visible squares"),
        ("compression blocking", "breaks edges into square tiles"),
        ("visible block edges from compression", "give smooth areas a tiled look"),
    ),
    "pixelation": (
        ("coarse pixelation", "turns curves and edges into staircases"),
        ("chunky pixel blocks", "replace fine detail with flat squares"),
        ("stair-stepped pixelation", "hides small structures inside flat tiles"),
    ),
    "dark": (
        ("underexposure", "hides detail in murky shadows"),
        ("dim, dark exposure", "swallows shadow detail"),
        ("crushed shadows from low exposure", "leave large areas nearly black"),
    ),
    "bright": (
        ("overexposure", "washes out highlight detail"),
        ("blown highlights", "flatten the brightest areas to white"),
        ("overly bright exposure", "bleaches tones and texture"),
    ),
    "low_contrast": (
        ("flat, low contrast", "makes the scene look hazy and dull"),
        ("weak tonal separation", "lets objects melt into the background"),
        ("hazy, low-contrast rendering", "drains depth from the scene"),
    ),
    "faded": (
        ("faded, muted colour", "leaves the scene close to grey"),
        ("drained colour saturation", "makes hues look pale and lifeless"),
        ("nearly absent colour", "reduces the scene to dull greyish tones"),
    ),
}
_GENERIC = (
    ("loss of crispness", "takes the edge off fine detail"),
    ("lack of well-defined detail", "makes textures look less distinct than they should"),
)
_SEVERITY_WORDS = {
    1: ("mild", "slight", "minor"),
    2: ("moderate", "noticeable", "clear"),
    3: ("strong", "pronounced", "marked"),
    4: ("severe", "heavy", "extreme"),
}
_MILDER = {1: ("faint", "minor"), 2: ("mild", "some"), 3: ("noticeable", "moderate"), 4: ("strong", "obvious")}
_VERDICT = {
    0: ("excellent", "very high", "very good"),
    1: ("good", "fairly good", "decent"),
    2: ("fair", "middling", "mediocre"),
    3: ("poor", "low", "weak"),
    4: ("very poor", "bad", "very low"),
}
_DETAIL = {
    1: (
        "the content remains clear and only the finest detail is slightly affected",
        "the subject still reads well and only fine textures suffer a little",
    ),
    2: (
        "the main content stays recognisable but fine detail is clearly compromised",
        "the scene is still readable although fine texture is visibly degraded",
    ),
    3: (
        "much of the fine detail is lost and the defects are obvious at a glance",
        "the degradation is plain to see and a good part of the detail is gone",
    ),
    4: (
        "fine detail is largely destroyed and the content is hard to read",
        "little usable detail survives and the image is hard to read",
    ),
}


def _iqa_text(m: Measurements, score: float, pick: _Picker) -> str:
    band = _band(score)
    fs = technical_factors(m)
    f1, f2 = fs[0], fs[1]
    verdict = pick("verdict", _VERDICT[band])
    if band == 0:
        strengths = []
        sev = {f.name: f.severity for f in fs}
        if sev["blur"] < 0.25 and sev["motion"] < 0.25:
            strengths.append(
                pick(
                    "s_sharp",
                    ("crisp, well-defined edges", "sharply rendered fine detail", "clear, well-resolved textures"),
                )
            )
        if sev["noise"] < 0.2 and sev["impulse"] < 0.2:
            strengths.append(
                pick(
                    "s_clean",
                    (
                        "smooth areas free of visible noise",
                        "no visible grain in flat regions",
                        "clean, noise-free surfaces",
                    ),
                )
            )
        if sev["blocking"] < 0.2 and sev["pixelation"] < 0.2:
            strengths.append(pick("s_codec", ("no visible compression artefacts", "gradients free of blocking")))
        if sev["dark"] < 0.3 and sev["bright"] < 0.3:
            strengths.append(
                pick("s_expo", ("balanced exposure", "an exposure that keeps shadows and highlights readable"))
            )
        if sev["faded"] < 0.3:
            strengths.append(pick("s_colour", ("natural, well-saturated colour", "faithful colour")))
        strengths = (strengths + ["steady tonal rendering", "a stable, even look"])[:2]
        opener = pick(
            "a_open",
            (
                "The image looks {q}, with {a} and {b}.",
                "Technically the picture is {q}, showing {a} and {b}.",
                "This is a {q} capture with {a} and {b}.",
            ),
        )
        q = pick("a_q", ("clean", "technically sound", "well captured"))
        if "capture" in opener and q == "well captured":
            q = "clean"
        s1 = opener.format(q=q, a=strengths[0], b=strengths[1])
        if f1.severity >= 0.3:
            noun, _ = pick("a_f1", _FACTOR_TEXT[f1.name])
            s2 = pick(
                "a_minor",
                (
                    "Apart from {w} {n}, nothing degrades the picture, so its technical quality is {v}.",
                    "Only {w} {n} can be found on close inspection, and the overall technical quality is {v}.",
                ),
            ).format(w=pick("a_w", ("slight", "a touch of")), n=noun, v=verdict)
        else:
            s2 = pick(
                "a_none",
                (
                    "No blur, noise or compression damage stands out anywhere in the frame, so the overall "
                    "technical quality is {v}.",
                    "Nothing such as blur, grain or blocking distracts from the content, so the technical quality "
                    "is {v}.",
                    "There is no sign of blur, noise or compression damage, and the overall technical quality is {v}.",
                ),
            ).format(v=verdict)
        return f"{s1} {s2}"

    noun1, eff1 = pick("f1", _FACTOR_TEXT[f1.name] if f1.severity >= 0.12 else _GENERIC)
    sev1 = pick("sev1", _SEVERITY_WORDS[band])
    second = ""
    if f2.severity >= 0.3 and f2.severity >= 0.5 * f1.severity:
        noun2, _ = pick("f2", _FACTOR_TEXT[f2.name])
        second = pick("and2", (", along with {w} {n}", " together with {w} {n}", ", plus {w} {n}")).format(
            w=pick("sev2", _MILDER[band]), n=noun2
        )
    s1 = pick(
        "open",
        (
            "The picture suffers from {s} {n}{x}, which {e}.",
            "The most visible problem is {s} {n}{x}, which {e}.",
            "Looking at the technical side, the image shows {s} {n}{x}, which {e}.",
        ),
    ).format(s=sev1, n=noun1, x=second, e=eff1)
    detail = pick("detail", _DETAIL[band])
    s2 = pick(
        "close",
        (
            "{D}, so the technical quality comes across as {v}.",
            "As a result, {d}, and the overall quality is {v}.",
            "{D}, leaving an image whose technical quality is {v}.",
        ),
    ).format(D=_cap(detail), d=detail, v=verdict)
    return f"{s1} {s2}"


def iqa_rationale(m: Measurements, score: float, key: str) -> str:
    """Two sentences, 30–50 words: the dominant technical factors and a verdict matching `score`."""
    lo, hi = IQA_WORDS
    text = ""
    for attempt in range(24):
        text = _iqa_text(m, score, _Picker(key, attempt))
        n = count_words(text)
        if lo <= n <= hi:
            return text
    if count_words(text) < lo:  # last resort: a neutral closing clause
        text = text[:-1] + ", judged on sharpness, noise, compression, exposure and colour."
    return text


# ------------------------------------------------------------------------------------- IAA narrative
def _composition(m: Measurements, b: int, pick: _Picker) -> str:
    good = b <= 2
    if m.bar_fraction >= 0.1:
        return pick(
            "comp_bars",
            (
                "The composition is undermined by empty bars at the sides, and the squeezed proportions distort "
                "every shape.",
                "Blank bars eat into the frame, so the layout feels cramped and the subject looks squeezed out of "
                "shape.",
            ),
        )
    if m.tilt_strength >= 0.07 and 5.5 <= abs(m.tilt_deg) <= 20.0:
        return pick(
            "comp_tilt",
            (
                "The framing sits at a slant, so lines that should be level run across the frame and the structure "
                "feels accidental.",
                "A visible tilt throws the composition off balance, with verticals leaning as if the camera slipped.",
            ),
        )
    if m.centroid_offset > 0.35:
        if good and m.thirds_distance < 0.08:
            return pick(
                "comp_thirds",
                (
                    "The main visual weight sits off-centre near a rule of thirds point, giving the composition a "
                    "lively balance.",
                    "Placing the weight of the scene away from the centre, close to the thirds, gives the layout "
                    "some dynamism.",
                ),
            )
        return pick(
            "comp_off",
            (
                "Most of the visual weight drifts toward one edge, leaving the composition lopsided and the layout "
                "uneasy.",
                "The framing pushes the busy part of the scene to one side, so the balance of the composition feels "
                "off.",
            ),
        )
    if good:
        return pick(
            "comp_good",
            (
                "The composition places the subject near the centre, giving a stable and balanced framing.",
                "The framing is calm and centred, and the structure of the scene is easy to follow.",
                "A centred layout keeps the balance steady and leads the eye straight to the subject.",
            ),
        )
    if b == 3:
        return pick(
            "comp_mid",
            (
                "The framing is serviceable but static, and the composition does little to guide the eye.",
                "The layout holds together, yet the composition feels unplanned rather than deliberate.",
            ),
        )
    return pick(
        "comp_bad",
        (
            "The framing feels arbitrary, and the composition does little to present the subject with intent.",
            "The composition lacks a clear structure, so the subject seems cut off and poorly placed.",
        ),
    )


def _elements(m: Measurements, b: int, pick: _Picker) -> str:
    good = b <= 2
    if m.flat_colour_patch >= 0.06:
        return pick(
            "el_blotch",
            (
                "A flat, loud patch of saturated colour sits over the scene and hides part of the subject, breaking "
                "up the visual elements.",
                "A foreign blob of flat colour covers part of the subject, and its hard shape clashes with "
                "everything around it.",
            ),
        )
    if m.edge_density >= 0.18:
        return pick(
            "el_dense_g" if good else "el_dense_b",
            (
                "Dense texture and many small shapes fill the frame with engaging detail.",
                "Rich texture and plenty of lines give the scene a lively surface.",
            )
            if good
            else (
                "Dense texture and many small shapes compete for attention instead of supporting the subject.",
                "Busy lines and textures crowd the frame and scatter the eye.",
            ),
        )
    if m.edge_density < 0.06:
        return pick(
            "el_sparse_g" if good else "el_sparse_b",
            (
                "Broad smooth areas and simple shapes keep the scene calm and uncluttered.",
                "The frame relies on a few simple shapes and open space, which keeps it clean.",
            )
            if good
            else (
                "Broad empty areas and few shapes leave the frame feeling thin.",
                "There is little texture or shape to hold interest, so much of the space feels empty.",
            ),
        )
    return pick(
        "el_mid_g" if good else "el_mid_b",
        (
            "Shapes and textures are clearly separated, giving the scene a readable sense of depth.",
            "Distinct shapes and textures build a pleasant sense of depth and space.",
        )
        if good
        else (
            "Shapes and textures are present but do little to build depth or interest.",
            "The visual elements are ordinary, and the sense of depth stays shallow.",
        ),
    )


def _light(m: Measurements, b: int, pick: _Picker) -> str:
    good = b <= 2
    if m.brightness < 0.22:
        return pick(
            "li_dark",
            (
                "Lighting is dim and murky; deep shadow swallows much of the scene and mutes the colour palette.",
                "The scene is underexposed, so heavy shadow hides detail and the colours lose their harmony.",
            )
            if not good
            else (
                "Low-key lighting keeps most of the frame in shadow, a moody choice that still lets the lit areas "
                "glow.",
                "Deep shadow dominates the lighting, and the few lit areas carry the colour palette.",
            ),
        )
    if m.bright_clip > 0.1 and not good:
        return pick(
            "li_burnt",
            (
                "Highlights are burnt out: large areas clip to blank white and the bleached palette loses its "
                "harmony.",
                "The scene is overexposed, so bright areas turn to featureless white and the colours look bleached.",
            ),
        )
    if m.contrast < 0.21 and m.colourfulness < 32 and m.brightness > 0.28:
        return pick(
            "li_washed",
            (
                "Tones look flat and washed out, with pale colour and weak contrast that drain the harmony from the "
                "palette.",
                "A hazy, washed-out look flattens the contrast, and the pale colour palette feels lifeless.",
            )
            if not good
            else (
                "Soft, pale tones and gentle contrast give the palette a quiet, airy harmony.",
                "The colour palette is light and muted, with gentle contrast that keeps the mood soft.",
            ),
        )
    if m.vignetting < 0.62:
        return pick(
            "li_vig_g" if good else "li_vig_b",
            (
                "Darkened edges draw the eye toward the brighter centre, a lighting choice that focuses attention.",
                "Shadow gathers toward the edges, so the lighting frames the subject and holds attention in the "
                "middle.",
            )
            if good
            else (
                "Heavy shadow closes in from the corners, so the lighting feels heavy-handed and the edges turn "
                "murky.",
                "Dark corners press in on the scene, and the uneven lighting makes the frame feel closed in.",
            ),
        )
    if m.colourfulness > 60:
        return pick(
            "li_vivid_g" if good else "li_vivid_b",
            (
                "The colour palette is rich and saturated, and the contrast between light and shadow gives the "
                "scene depth.",
                "Vivid colour and confident contrast make the lighting feel warm and harmonious.",
            )
            if good
            else (
                "Colour is strong, but the palette does not settle into a cohesive harmony.",
                "The saturated colour palette feels loud rather than harmonious.",
            ),
        )
    if m.colourfulness < 20:
        return pick(
            "li_mono",
            (
                "The palette is restrained and nearly monochrome, relying on contrast and light rather than colour.",
                "Colour plays almost no role; the image leans on tonal contrast and lighting instead.",
            ),
        )
    return pick(
        "li_mid_g" if good else "li_mid_b",
        (
            "Colour and lighting are natural and balanced, with a quiet harmony that suits the scene.",
            "Even lighting and a natural colour palette give the image a cohesive look.",
        )
        if good
        else (
            "Colour and lighting are unremarkable and lack the harmony that would lift the scene.",
            "The lighting is plain and the colour palette lacks harmony.",
        ),
    )


def _technical(m: Measurements, b: int, pick: _Picker) -> str:
    f = technical_factors(m)[0]
    if f.severity >= 0.4 and f.name not in ("dark", "faded", "low_contrast"):
        noun, eff = pick("te_f", _FACTOR_TEXT[f.name])
        return pick(
            "te_fault",
            (
                "Technically, the execution is hurt by {n}, which {e}.",
                "On the technical side, {n} costs clarity and {e}.",
            ),
        ).format(n=noun, e=eff)
    if b <= 1:
        return pick(
            "te_good",
            (
                "Technical execution is clean, with good clarity and crisp edges.",
                "The rendering is technically polished, with clean edges and good clarity.",
            ),
        )
    if b <= 3:
        return pick(
            "te_mid",
            (
                "Technical execution is adequate, with acceptable clarity but little polish.",
                "Clarity is acceptable, though the execution shows no particular refinement.",
            ),
        )
    return pick(
        "te_bad",
        (
            "Technical execution is serviceable at best, and nothing about the rendering feels refined.",
            "The execution lacks polish, and the rendering does the subject few favours.",
        ),
    )


def _theme(b: int, pick: _Picker) -> str:
    return pick(
        f"th{min(b, 4)}",
        (
            (
                "The theme is communicated with real conviction, and every part of the frame serves the story.",
                "The subject carries a strong theme, and the message lands immediately and memorably.",
            ),
            (
                "The theme comes through clearly, and the subject is presented plainly enough for its story to read "
                "at once.",
                "The subject carries a clear theme, and the image communicates its story without effort.",
            ),
            (
                "The theme is understandable, although the message is delivered without much emphasis.",
                "Its story is easy to grasp, if told in a plain way.",
            ),
            (
                "The theme is still recognisable, but the presentation weakens how the story communicates.",
                "The subject is identifiable, yet the message gets muddled by how it is shown.",
            ),
            (
                "The theme is obscured, and the image struggles to communicate any clear message or story.",
                "Whatever story the subject could tell is lost, and the message never comes across.",
            ),
        )[min(b, 4)],
    )


def _emotion(m: Measurements, b: int, pick: _Picker) -> str:
    if b <= 2:
        if m.warmth > 0.08:
            return pick(
                "em_warm",
                (
                    "Warm tones evoke an inviting mood for the viewer.",
                    "The warm colour gives the viewer an easy, friendly feeling.",
                ),
            )
        if m.warmth < -0.05:
            return pick(
                "em_cool",
                (
                    "Cool tones set a calm, reflective mood for the viewer.",
                    "A cool cast lends the scene a quiet, composed feeling.",
                ),
            )
        return pick(
            "em_neut",
            (
                "The mood is engaging and holds the viewer's attention.",
                "The image evokes a pleasant, settled feeling in the viewer.",
            ),
        )
    if b == 3:
        return pick(
            "em_mid",
            (
                "The emotional impact is modest; the viewer notices the scene but is not moved by it.",
                "The mood is muted, so the viewer stays at a distance.",
            ),
        )
    if m.brightness < 0.22:
        return pick(
            "em_gloom",
            (
                "The gloom feels unintended and leaves the viewer with little emotional impact.",
                "The murky mood reads as a mistake rather than a feeling the viewer can share.",
            ),
        )
    return pick(
        "em_bad",
        (
            "The emotional impact is weak; the viewer notices the flaws before any feeling.",
            "The flaws get in the way, and the image evokes little for the viewer.",
        ),
    )


def _originality(b: int, pick: _Picker) -> str:
    return pick(
        f"or{min(b, 4)}",
        (
            (
                "The treatment feels original and creative, a fresh take on a familiar subject.",
                "There is a unique, creative eye at work here, far from a generic snapshot.",
            ),
            (
                "The approach is fairly conventional, but it is handled with enough care to feel genuine rather "
                "than generic.",
                "It is not a radically original idea, yet the treatment feels considered and personal.",
            ),
            (
                "Creatively, the image follows a familiar and somewhat generic approach.",
                "There is little that is original here, though nothing jars either.",
            ),
            (
                "There is little originality, and the treatment feels generic.",
                "Creatively, the picture feels generic and unplanned.",
            ),
            (
                "Nothing in the treatment feels original or creative, and the result reads as a derivative snapshot.",
                "The image shows no creative intent, and its treatment is generic at best.",
            ),
        )[min(b, 4)],
    )


_OVERALL = (
    (
        "Overall, the aesthetic appeal is excellent: a cohesive image in which every part works together.",
        "Overall, this is a highly appealing image with a strong, unified aesthetic.",
    ),
    (
        "Overall, the aesthetic appeal is strong: a cohesive, pleasing image with only minor reservations.",
        "Overall, the image is attractive and coherent, with a clear aesthetic appeal.",
    ),
    (
        "Overall, the image is pleasant but unremarkable, with moderate aesthetic appeal.",
        "Overall, the aesthetic appeal is moderate: agreeable, but short of memorable.",
    ),
    (
        "Overall, the aesthetic appeal is mixed, as the weaknesses hold back an otherwise ordinary picture.",
        "Overall, the image has only modest appeal, and its flaws outweigh its strengths.",
    ),
    (
        "Overall, the aesthetic appeal is weak, and the image fails to come together as a whole.",
        "Overall, the image has little aesthetic appeal and lacks cohesion.",
    ),
    (
        "Overall, the aesthetic appeal is poor; the flaws dominate and the image does not work as a whole.",
        "Overall, this is an unappealing image whose problems overwhelm whatever strengths it has.",
    ),
)
_OVERALL_TECH = (  # same_style IQA: the same narrative, judged on technical quality
    "Overall, the technical quality is excellent and the image holds together as a whole.",
    "Overall, the technical quality is good, with only minor reservations.",
    "Overall, the technical quality is acceptable but unremarkable.",
    "Overall, the technical quality is mixed, and the flaws are easy to see.",
    "Overall, the technical quality is weak, and the defects dominate the viewing experience.",
    "Overall, the technical quality is very poor; the defects overwhelm the content.",
)


def _narrative_slots(m: Measurements, score: float, pick: _Picker, task: str) -> list[tuple[str, str]]:
    b = _iaa_band(score)
    tb = min(4, b)  # tone band for the soft slots (0–1 good … 4–5 bad)
    tone = 1 if b <= 1 else 2 if b == 2 else 3 if b == 3 else 4
    overall = pick("overall", _OVERALL[b]) if task == "iaa" else _OVERALL_TECH[b]
    return [
        ("composition", _composition(m, tone, pick)),
        ("elements", _elements(m, tone, pick)),
        ("light", _light(m, tone, pick)),
        ("technical", _technical(m, tone, pick)),
        ("theme", _theme(tb, pick)),
        ("emotion", _emotion(m, tone, pick)),
        ("originality", _originality(tb, pick)),
        ("overall", overall),
    ]


_EXTRA = (
    "Taken together, these observations explain the verdict that follows.",
    "Each of these points shapes the final judgement.",
    "Weighing these aspects against each other leads to the final assessment.",
)


def _fit_words(
    parts: list[tuple[str, str]],
    pick: _Picker,
    lo: int,
    hi: int,
    droppable: Sequence[str] = ("elements", "emotion", "originality", "theme"),
) -> str:
    parts = list(parts)
    text = " ".join(p for _, p in parts)
    for slot in droppable:  # too long: drop the least essential sentences while ≥ 5 groups stay covered
        if count_words(text) <= hi:
            break
        trial = [(k, p) for k, p in parts if k != slot]
        t2 = " ".join(p for _, p in trial)
        if len(covered_aspects(t2)) >= 5:
            parts, text = trial, t2
    if count_words(text) < lo:
        insert = pick("extra", _EXTRA)
        parts.insert(len(parts) - 1, ("extra", insert))
        text = " ".join(p for _, p in parts)
    return text


def iaa_rationale(m: Measurements, score: float, key: str, task: str = "iaa") -> str:
    """A ~100-word narrative (90–130) over the eight aspects, tone and verdict matching `score`."""
    lo, hi = IAA_WORDS
    best = ""
    for attempt in range(12):
        pick = _Picker(key, attempt)
        text = _fit_words(_narrative_slots(m, score, pick, task), pick, lo, hi)
        if lo <= count_words(text) <= hi and len(covered_aspects(text)) >= 5:
            return text
        best = best or text
    return best


_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+")
_CONNECT = {
    "visual_elements": ("Visually, {x}", "Among the visual elements, {x}"),
    "composition_structure": ("In its composition, {x}", "Structurally, {x}"),
    "overall_gestalt": ("As a whole, {x}", "In overall harmony, {x}"),
    "technical_execution": ("Technically, {x}", "In execution, {x}"),
    "theme_communication": ("Thematically, {x}", "As for its theme, {x}"),
    "emotion_viewer_response": ("Emotionally, {x}", "For the viewer, {x}"),
    "originality_creativity": ("In terms of originality, {x}", "Creatively, {x}"),
    "overall_evaluation": ("In sum, {x}", "Judged as a whole, {x}"),
}


_FAST_CUES = ("composition", "light", "elements", "technical")  # the slots a fast IAA rationale may open with


def _salient_cues(m: Measurements, b: int, pick: _Picker) -> list[str]:
    """Candidate first sentences of a fast IAA rationale, the most telling measured cue first."""
    strong = []
    if (
        m.bar_fraction >= 0.1
        or (m.tilt_strength >= 0.07 and 5.5 <= abs(m.tilt_deg) <= 20.0)
        or m.centroid_offset > 0.35
    ):
        strong.append("composition")
    if m.flat_colour_patch >= 0.06:
        strong.append("elements")
    if (
        m.brightness < 0.22
        or (m.contrast < 0.21 and m.colourfulness < 32 and m.brightness > 0.28)
        or m.vignetting < 0.62
    ):
        strong.append("light")
    if technical_factors(m)[0].severity >= 0.4:
        strong.append("technical")
    slots = {"composition": _composition, "light": _light, "elements": _elements, "technical": _technical}
    order = strong + [c for c in _FAST_CUES if c not in strong]
    return [slots[c](m, b, pick) for c in order]


def iaa_fast_rationale(m: Measurements, score: float, key: str, attrs: Optional[dict] = None) -> str:
    """Two sentences, 30–50 words: the most telling aesthetic cue (measured, or the first attribute text) and the
    overall verdict matching `score`."""
    lo, hi = IQA_WORDS
    b = _iaa_band(score)
    tone = 1 if b <= 1 else 2 if b == 2 else 3 if b == 3 else 4
    best = ""
    for attempt in range(12):
        pick = _Picker(key, attempt)
        firsts = []
        for k in [k for k in ATTRIBUTE_ORDER if (attrs or {}).get(k)][:1]:
            x = _excerpt(attrs[k], 18)
            if x:
                conn = pick(f"c_{k}", _CONNECT[k])
                firsts.append(conn.format(x=x[:1].lower() + x[1:]) + ".")
        firsts += _salient_cues(m, tone, pick)
        verdict = pick("overall", _OVERALL[b])
        for first in firsts:
            text = f"{first} {verdict}"
            if lo <= count_words(text) <= hi:
                return text
            if not best or abs(count_words(text) - (lo + hi) / 2) < abs(count_words(best) - (lo + hi) / 2):
                best = text
    return best


def _excerpt(text: str, max_words: int) -> str:
    """The first sentence without digits, cut at a clause boundary to ≤ max_words words, no final stop."""
    for sent in _SENT_SPLIT.split(" ".join(str(text).split())):
        if sent and not re.search(r"\d", sent):
            words = sent.rstrip(".!?").split()
            if len(words) > max_words:
                cut = " ".join(words[:max_words])
                comma = cut.rfind(",")
                words = (cut[:comma] if comma > len(cut) // 2 else cut).split()
            return " ".join(words).rstrip(",;:")
    return ""


def attributes_rationale(attrs: dict, m: Measurements, score: float, key: str) -> Optional[str]:
    """Narrative from ArtiMuse-style attribute texts (paraphrased excerpts + connectors), or None if unusable."""
    lo, hi = IAA_WORDS
    keys = [k for k in ATTRIBUTE_ORDER if attrs.get(k)] + [k for k in attrs if k not in ATTRIBUTE_ORDER and attrs[k]]
    if len(keys) < 3:
        return None
    for max_words in (16, 13, 10, 8):
        pick = _Picker(key, max_words)
        parts = []
        for k in keys:
            x = _excerpt(attrs[k], max_words)
            if not x:
                continue
            conn = pick(f"c_{k}", _CONNECT.get(k, ("Regarding {k}, {{x}}".format(k=k.replace("_", " ")),)))
            parts.append((k, conn.format(x=x[:1].lower() + x[1:]) + "."))
        b = _iaa_band(score)
        parts.append(("overall", pick("overall", _OVERALL[b])))
        text = " ".join(p for _, p in parts)
        if count_words(text) < lo:  # too little attribute text: complete with measured slots
            for slot, sent in _narrative_slots(m, score, pick, "iaa")[:-1]:
                if count_words(text) >= lo:
                    break
                parts.insert(len(parts) - 1, (slot, sent))
                text = " ".join(p for _, p in parts)
        if count_words(text) <= hi and len(covered_aspects(text)) >= 5:
            return text
    return None


# ------------------------------------------------------------------------------------------ teacher
class OfflineTeacher:
    """Grounded rationales from image measurements, ending in the known score (sync, thread-safe, deterministic)."""

    def __init__(self, cfg: Optional[TeacherConfig] = None):
        self.cfg = cfg or TeacherConfig()
        self.styles = {t: self.cfg.style_of(t) for t in ("iqa", "iaa")}
        settings = {"version": TEACHER_VERSION, "same_style": self.styles == SLOW_BOTH}
        if self.styles not in (DEFAULT_STYLES, SLOW_BOTH):  # the two historical settings keep their ids
            settings["style"] = self.styles
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        self.teacher_id = f"{TEACHER_VERSION}:{digest}"

    def rationale(self, sample: SampleRecord, m: Optional[Measurements] = None) -> str:
        """The think text for `sample` (measures the image unless `m` is given)."""
        m = m if m is not None else measure_image(sample.image_path)
        key, style = sample.sample_id, self.styles[sample.task]
        if sample.task == "iaa":
            attrs = _parse_attributes(sample)
            if style == "fast":
                return iaa_fast_rationale(m, sample.score, key, attrs)
            text = attributes_rationale(attrs, m, sample.score, key) if attrs else None
            return text or iaa_rationale(m, sample.score, key)
        if style == "slow":
            return iaa_rationale(m, sample.score, key, task="iqa")
        return iqa_rationale(m, sample.score, key)

    def generate(self, sample: SampleRecord) -> RationaleRecord:
        text = self.rationale(sample)
        return RationaleRecord(
            sample_id=sample.sample_id,
            image_path=sample.image_path,
            task=sample.task,
            score=sample.score,
            rationale=text,
            target=make_target(text, sample.score),
            teacher=self.teacher_id,
            n_words=count_words(text),
        )


def _parse_attributes(sample: SampleRecord) -> dict:
    if not sample.attributes:
        return {}
    try:
        obj = json.loads(sample.attributes)
    except json.JSONDecodeError as e:
        raise ValueError(f"sample {sample.sample_id}: attributes is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"sample {sample.sample_id}: attributes must be a JSON object, got {type(obj).__name__}")
    return {str(k): str(v) for k, v in obj.items() if v}


__all__ = [
    "OfflineTeacher",
    "technical_factors",
    "iqa_rationale",
    "iaa_rationale",
    "iaa_fast_rationale",
    "attributes_rationale",
    "TEACHER_VERSION",
]

"""Offline teacher: every demo sample gets a grounded rationale that passes the rule checks and ends in its score."""

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields as _fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_contracts.config.rationales import RuleConfig, TeacherConfig
from data_contracts.config.samples import DemoDataConfig
from tatar_core.demo.data import build_demo_samples
from tatar_core.demo.measure import Measurements, measure_image
from tatar_core.demo.teacher import (
    OfflineTeacher,
    attributes_rationale,
    iaa_rationale,
    iqa_rationale,
    technical_factors,
)
from tatar_core.filtered.rules import rule_reasons
from tatar_core.method.aspects import covered_aspects
from tatar_core.method.parsing import count_words, parse_strict
from tatar_core.method.prompts import make_target
from tatar_core.method.scales import format_score

SENTENCE_END = re.compile(r"[.!?](?:\s|$)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The default demo set (every photo, type, level and manipulation, 6 of the generated references: 2 of each
    kind) with its teacher output."""
    recs = build_demo_samples(DemoDataConfig(generated_refs=6), tmp_path_factory.mktemp("demo"))
    teacher = OfflineTeacher(TeacherConfig())
    return recs, [teacher.generate(r) for r in recs]


def test_every_demo_rationale_passes_the_rules(demo):
    recs, outs = demo
    rules = RuleConfig()
    failures = {o.sample_id: rule_reasons(o, rules) for o in outs}
    assert not {k: v for k, v in failures.items() if v}
    for r, o in zip(recs, outs):
        assert (o.sample_id, o.task, o.image_path, o.score) == (r.sample_id, r.task, r.image_path, r.score)
        assert o.target == make_target(o.rationale, r.score)
        assert o.target.endswith(f"<answer>{format_score(r.score)}</answer>")
        assert parse_strict(o.target) == pytest.approx(round(r.score, 2))
        assert o.n_words == count_words(o.rationale)


def test_iqa_shape_two_sentences_30_to_50_words_no_digits(demo):
    _, outs = demo
    iqa = [o for o in outs if o.task == "iqa"]
    assert iqa
    for o in iqa:
        assert len(SENTENCE_END.findall(o.rationale)) == 2, o.rationale
        assert 30 <= o.n_words <= 50, o.rationale
        assert not re.search(r"\d", o.rationale)


def test_iaa_shape_narrative_90_to_130_words_and_aspects(demo):
    _, outs = demo
    iaa = [o for o in outs if o.task == "iaa"]
    assert iaa
    for o in iaa:
        assert 90 <= o.n_words <= 130, o.rationale
        assert len(covered_aspects(o.rationale)) >= 5
        assert not re.search(r"\d", o.rationale)
        assert len(SENTENCE_END.findall(o.rationale)) >= 6


def test_wording_varies_across_samples(demo):
    _, outs = demo
    texts = [o.rationale for o in outs]
    assert len(set(texts)) >= 0.95 * len(texts)
    openings = {t.split(",")[0].split(" ")[1] for t in texts if t}
    assert len(openings) >= 5  # several templates, not one sentence repeated


def test_wording_consistent_with_score(demo):
    recs, outs = demo
    severe = re.compile(r"\b(severe|heavy|extreme|very poor|bad|destroyed)\b")
    praise = re.compile(r"\b(excellent|very good|very high|clean)\b")
    for r, o in zip(recs, outs):
        if r.task != "iqa":
            continue
        if r.score >= 80:
            assert praise.search(o.rationale) and not severe.search(o.rationale), o.rationale
        if r.score < 20:
            assert severe.search(o.rationale) and not praise.search(o.rationale), o.rationale
    iaa = {r.sample_id: o.rationale for r, o in zip(recs, outs) if r.task == "iaa"}
    for sid, text in iaa.items():
        last = text.split(". ")[-1]
        if sid.endswith("/original"):
            assert re.search(r"strong|attractive", last), last
        if sid.endswith("/blotch"):
            assert re.search(r"poor|unappealing", last), last


KEYWORDS = {  # distortion → words a grounded rationale must use at level 5
    "gblur": r"blur|focus|soft",
    "awgn": r"noise|grain",
    "impulse": r"speck|salt-and-pepper|dots",
    "jpeg": r"block|compression|pixel",
    "pixelate": r"pixel|block",
    "darken": r"dark|shadow|exposure",
    "desat": r"colour|saturation|grey",
    "contrast": r"contrast|haz|tonal",
}


def test_rationales_are_grounded_in_the_measured_distortion(demo):
    recs, outs = demo
    by_id = {o.sample_id: o.rationale for o in outs}
    refs = sorted({r.ref_id for r in recs if not r.ref_id.startswith("gen-")})  # the photos (generated: IQA only)
    for t, rx in KEYWORDS.items():
        hits = sum(bool(re.search(rx, by_id[f"demo-iqa/{ref}/{t}/5"], re.I)) for ref in refs)
        # at most 1 photo in 5 may name another measured defect (darken: china reads as detail loss, the ihc
        # micrograph as grain)
        assert hits >= 0.8 * len(refs), (t, hits)
    for ref in refs:  # measured IAA cues drive the words
        assert re.search(r"bars", by_id[f"demo-iaa/{ref}/squash_pad"])
        assert re.search(r"patch|blob", by_id[f"demo-iaa/{ref}/blotch"])
        assert re.search(r"washed|pale|muted", by_id[f"demo-iaa/{ref}/washed"])


def test_top_factor_identifies_the_distortion(demo):
    """When the score is low enough for a factor to be named, the measured top factor matches the distortion: on
    ≥ 90 % of the distorted photos (measured 0.96) and ≥ 75 % of the generated references (measured 0.81: dead
    leaves' hard edges and 1/f noise's grain pass for impulse noise or low contrast more often)."""
    expect = {
        "gblur": {"blur", "motion"},
        "motion": {"motion", "blur"},
        "awgn": {"noise"},
        "impulse": {"impulse", "noise"},
        "jpeg": {"blocking", "pixelation"},
        "jp2k": {"blur", "motion", "blocking"},
        "contrast": {"low_contrast", "faded"},
        "desat": {"faded"},
        "pixelate": {"pixelation", "blocking"},
        "darken": {"dark"},
    }
    recs, _ = demo
    hit, tot = {True: 0, False: 0}, {True: 0, False: 0}
    for r in recs:
        meta = json.loads(r.meta)
        if r.task != "iqa" or meta["level"] == 0 or r.score >= 80:
            continue
        generated = r.ref_id.startswith("gen-")
        tot[generated] += 1
        hit[generated] += technical_factors(measure_image(r.image_path))[0].name in expect[meta["type"]]
    assert tot[False] > 100 and hit[False] / tot[False] >= 0.9
    assert tot[True] > 100 and hit[True] / tot[True] >= 0.75


def test_deterministic_and_thread_safe(demo):
    recs, outs = demo
    sub = recs[::7]
    t2 = OfflineTeacher(TeacherConfig())
    with ThreadPoolExecutor(4) as ex:
        par = list(ex.map(t2.generate, sub))
    assert par == outs[::7]
    assert t2.teacher_id == OfflineTeacher(TeacherConfig(iqa={"temperature": 0.9})).teacher_id


def test_same_style_gives_narratives_for_both_tasks(demo):
    recs, outs = demo
    t = OfflineTeacher(TeacherConfig(same_style=True))
    assert t.teacher_id != OfflineTeacher(TeacherConfig()).teacher_id
    iqa = [r for r in recs if r.task == "iqa"][::25]
    for r in iqa:
        o = t.generate(r)
        assert 90 <= o.n_words <= 130 and len(covered_aspects(o.rationale)) >= 5
        assert "technical quality" in o.rationale and parse_strict(o.target) == pytest.approx(round(r.score, 2))
        assert rule_reasons(o, RuleConfig(iqa_max_words=220)) == []
    iaa = [(r, o) for r, o in zip(recs, outs) if r.task == "iaa"][:3]
    assert [t.generate(r).rationale for r, _ in iaa] == [o.rationale for _, o in iaa]


def test_attribute_texts_are_the_basis_when_present(demo):
    recs, _ = demo
    r = next(x for x in recs if x.task == "iaa")
    attrs = {
        "visual_elements": "A lone lighthouse stands against a stormy violet sky. Waves crash below.",
        "composition_structure": "The tower sits on the left third, balancing the open sea on the right.",
        "overall_gestalt": "Sky, sea and tower form a unified, brooding scene.",
        "technical_execution": "Sharp focus on the tower with clean long-exposure water.",
        "theme_communication": "It speaks of resilience against the elements.",
        "emotion_viewer_response": "The scene evokes solitude and quiet awe.",
        "originality_creativity": "A familiar subject given a distinctive violet palette.",
        "overall_evaluation": "A strong seascape that rates about 7.5 out of 10.",
    }
    o = OfflineTeacher().generate(r.model_copy(update={"attributes": json.dumps(attrs)}))
    assert "lighthouse" in o.rationale and "resilience" in o.rationale and "solitude" in o.rationale
    assert not re.search(r"\d", o.rationale)  # the attribute sentence carrying a number is not copied
    assert rule_reasons(o, RuleConfig()) == []
    with pytest.raises(ValueError, match="attributes"):
        OfflineTeacher().generate(r.model_copy(update={"attributes": "{not json"}))


# ------------------------------------------------------------------ any measurements, any score, any attributes
_RANGES = dict(
    width=(32, 512),
    height=(32, 512),
    sharpness=(0, 9),
    laplacian_var=(0, 600),
    noise_sigma=(0, 40),
    impulse_fraction=(0, 0.1),
    blockiness=(0.3, 10),
    flat_fraction=(0, 1),
    directional_blur=(0, 2),
    brightness=(0, 1),
    dark_clip=(0, 1),
    bright_clip=(0, 1),
    contrast=(0, 0.5),
    colourfulness=(0, 150),
    saturation=(0, 1),
    warmth=(-1, 1),
    flat_colour_patch=(0, 0.5),
    centroid_x=(0, 1),
    centroid_y=(0, 1),
    centroid_offset=(0, 1.4),
    thirds_distance=(0, 0.47),
    tilt_deg=(-45, 45),
    tilt_strength=(0, 1),
    edge_density=(0, 1),
    symmetry=(-1, 1),
    vignetting=(0, 2),
    bar_fraction=(0, 1),
)
measurements = st.builds(
    Measurements,
    **{
        f.name: (
            st.integers(*_RANGES[f.name])
            if f.name in ("width", "height")
            else st.floats(*_RANGES[f.name], allow_nan=False)
        )
        for f in _fields(Measurements)
    },
)
scores = st.floats(0, 100, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(m=measurements, score=scores, key=st.text(min_size=1, max_size=12))
def test_shapes_hold_for_any_measurements(m, score, key):
    t = iqa_rationale(m, score, key)
    assert 30 <= count_words(t) <= 50 and len(SENTENCE_END.findall(t)) == 2 and not re.search(r"\d", t)
    for task in ("iaa", "iqa"):
        n = iaa_rationale(m, score, key, task)
        assert 90 <= count_words(n) <= 130 and len(covered_aspects(n)) >= 5


_words = st.sampled_from(
    "the light soft scene subject frame calm bold red tree sky 42 sea, strong; quiet bright".split()
)
_sentence = st.lists(_words, min_size=1, max_size=40).map(lambda w: " ".join(w) + ".")
_attrs = st.dictionaries(
    st.sampled_from(
        [
            "visual_elements",
            "composition_structure",
            "overall_gestalt",
            "technical_execution",
            "theme_communication",
            "other_aspect",
        ]
    ),
    st.lists(_sentence, min_size=1, max_size=3).map(" ".join),
    max_size=6,
)


@settings(max_examples=100, deadline=None)
@given(attrs=_attrs, m=measurements, score=scores)
def test_attribute_narratives_always_pass_or_fall_back(attrs, m, score):
    t = attributes_rationale(attrs, m, score, "k")
    if t is not None:
        assert 90 <= count_words(t) <= 130 and len(covered_aspects(t)) >= 5 and not re.search(r"\d", t)


def test_style_per_task_fast_iaa_and_unchanged_ids(demo):
    """`style` generalises same_style: fast IAA is two sentences that pass the fast rules; the default and the
    same_style settings keep their historical teacher ids (so their rationales stay as they were)."""
    recs, outs = demo
    default_id = OfflineTeacher(TeacherConfig()).teacher_id
    assert (
        default_id
        == "offline-v1:"
        + __import__("hashlib")
        .sha256(json.dumps({"same_style": False, "version": "offline-v1"}, sort_keys=True).encode())
        .hexdigest()[:10]
    )
    assert (
        OfflineTeacher(TeacherConfig(style={"iqa": "slow", "iaa": "slow"})).teacher_id
        == OfflineTeacher(TeacherConfig(same_style=True)).teacher_id
    )
    assert TeacherConfig(style={"iqa": "slow", "iaa": "slow"}) == TeacherConfig(same_style=True)
    with pytest.raises(ValueError, match="same_style"):
        TeacherConfig(same_style=True, style={"iaa": "fast"})
    fast = OfflineTeacher(TeacherConfig(style={"iaa": "fast"}))
    assert fast.teacher_id not in (default_id, OfflineTeacher(TeacherConfig(same_style=True)).teacher_id)
    iaa = [(r, o) for r, o in zip(recs, outs) if r.task == "iaa"]
    for r, o in iaa:
        f = fast.generate(r)
        assert len(SENTENCE_END.findall(f.rationale)) == 2 and 25 <= f.n_words <= 50, f.rationale
        assert f.n_words < o.n_words and parse_strict(f.target) == pytest.approx(round(r.score, 2))
        assert rule_reasons(f, RuleConfig(), style="fast") == []
        assert any(c.startswith("words") for c in rule_reasons(f, RuleConfig()))  # the slow rules reject it
    iqa = [(r, o) for r, o in zip(recs, outs) if r.task == "iqa"][:5]
    assert [fast.generate(r).rationale for r, _ in iqa] == [o.rationale for _, o in iqa]  # IQA unchanged

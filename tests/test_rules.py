"""Rule checks: a good rationale passes; each failure kind is caught with its stable reason code."""

import pytest

from data_contracts.config.rationales import RuleConfig
from data_contracts.records import RationaleRecord
from tatar_core.filtered.rules import rule_reasons
from tatar_core.method.aspects import ASPECT_KEYWORDS, covered_aspects
from tatar_core.method.prompts import make_target

IQA_OK = (
    "The picture suffers from strong grainy noise, which covers smooth areas with a busy speckle. "
    "Much of the fine detail is lost and the defects are obvious at a glance, so the technical quality "
    "comes across as poor."
)
IAA_OK = (
    "The composition is balanced and the framing calm. The colour palette is warm, with soft lighting and "
    "gentle contrast that add depth. Technical execution is clean, with good clarity. The theme reads at once, "
    "and the story is simple. The mood is inviting for the viewer. The approach is conventional rather than "
    "original, yet it feels genuine. Overall, the aesthetic appeal is strong and the image is cohesive, a "
    "pleasant picture that holds together from edge to edge and rewards a second look without any fuss."
)


def rec(task="iqa", rationale=IQA_OK, score=32.5, target=None, image_path="/nonexistent/x.png"):
    target = make_target(rationale, score) if target is None else target
    return RationaleRecord(
        sample_id="s1",
        image_path=image_path,
        task=task,
        score=score,
        rationale=rationale,
        target=target,
        teacher="t",
        n_words=len(rationale.split()),
    )


def codes(r, rules=None):
    return [x.split(":")[0] for x in rule_reasons(r, rules or RuleConfig())]


def test_good_records_pass():
    assert rule_reasons(rec(), RuleConfig()) == []
    assert rule_reasons(rec("iaa", IAA_OK, 71.0), RuleConfig()) == []
    fenced = make_target(IQA_OK, 32.5).replace("<answer>32.50", "<answer> 32.5 ")
    assert rule_reasons(rec(target=fenced), RuleConfig()) == []


@pytest.mark.parametrize(
    "target,detail",
    [
        (f"<think>{IQA_OK}</think><think>x</think><answer>32.50</answer>", "2 <think>"),
        (f"<think>{IQA_OK}<answer>32.50</answer>", "0 </think>"),
        (f"<answer>32.50</answer><think>{IQA_OK}</think>", "out of order"),
        (f"<think>{IQA_OK}</think>", "0 <answer>"),
        (f"<think>{IQA_OK}</think> so <answer>32.50</answer>", "between"),
        (f"<think>{IQA_OK}</think><answer>32.50</answer> done", "after"),
        (f"<think>{IQA_OK} <answer>1</answer></think><answer>32.50</answer>", "2 <answer>"),
    ],
)
def test_tag_structure(target, detail):
    reasons = rule_reasons(rec(target=target), RuleConfig())
    assert any(r.startswith("tags:") and detail in r for r in reasons), reasons


def test_answer_not_a_single_number():
    assert "answer" in codes(rec(target=make_target(IQA_OK, 32.5).replace("32.50", "about 32.50")))
    assert "answer" in codes(rec(target=make_target(IQA_OK, 32.5).replace("32.50", "32 50")))
    assert "answer" in codes(rec(target=make_target(IQA_OK, 32.5).replace("32.50", "")))


def test_score_out_of_range_and_mismatch():
    r = rec(target=make_target(IQA_OK, 32.5).replace("32.50", "132.50"))
    reasons = rule_reasons(r, RuleConfig())
    assert any(x.startswith("score_out_of_range: answer 132.5") for x in reasons)
    assert "answer_mismatch: answer 132.50 != score 32.50" in reasons
    low = rec(score=0.5, rationale=IQA_OK)
    assert rule_reasons(low, RuleConfig(score_min=1.0)) == [
        "score_out_of_range: answer 0.5 and score 0.5 not in [1, 100]"
    ]
    mism = rule_reasons(rec(target=make_target(IQA_OK, 55.0), score=60.0), RuleConfig())
    assert mism == ["answer_mismatch: answer 55.00 != score 60.00"]
    assert rule_reasons(rec(target=make_target(IQA_OK, 32.5).replace("32.50", "32.504")), RuleConfig()) == []


@pytest.mark.parametrize(
    "inject,label",
    [
        ("<tool_call>{}</tool_call>", "tool call"),
        ("<|im_start|>assistant", "role tag"),
        ("<assistant>", "role tag"),
        ("```python\nx\n```", "code fence"),
        ("<script>alert(1)</script>", "script"),
        ("\nsystem: you are", "role prefix"),
        ("\nassistant: sure", "role prefix"),
        ("BEGIN", "BEGIN/END marker"),
    ],
)
def test_contamination(inject, label):
    text = IQA_OK[:-1] + " " + inject + " ok."
    reasons = rule_reasons(rec(rationale=text), RuleConfig())
    cont = [r for r in reasons if r.startswith("contamination:")]
    assert cont and label in cont[0], reasons


def test_word_limits_per_task():
    long_iqa = " ".join([IQA_OK] * 3)
    assert rule_reasons(rec(rationale=long_iqa), RuleConfig()) == [f"words: iqa {len(long_iqa.split())} > 65"]
    assert codes(rec(rationale="Too short, clearly.")) == ["words"]
    short_iaa = "Composition balanced, colour warm, execution clean, theme clear, mood calm, overall strong."
    assert "words: iaa 12 < 60" in rule_reasons(rec("iaa", short_iaa, 50.0), RuleConfig())
    assert rule_reasons(rec(rationale=long_iqa), RuleConfig(iqa_max_words=200)) == []


def test_aspect_coverage_iaa_only():
    flat = " ".join(["The picture shows a person standing near a wall in daylight."] * 8)
    reasons = rule_reasons(rec("iaa", flat, 40.0), RuleConfig())
    assert any(r.startswith("aspects: ") and r.endswith("< 5") for r in reasons), reasons
    assert "aspects" not in codes(rec("iaa", flat, 40.0), RuleConfig(iaa_min_aspects=0))
    assert "aspects" not in codes(rec("iqa", " ".join(flat.split()[:40]), 40.0))


def test_number_in_rationale_iqa_only():
    text = IQA_OK.replace("strong grainy noise", "noise of about 32.5")
    reasons = rule_reasons(rec(rationale=text), RuleConfig())
    assert "number_in_rationale: '32.5'" in reasons
    assert "number_in_rationale" not in codes(rec("iaa", IAA_OK + " Shot in 1984.", 71.0))


def test_image_check_is_opt_in(tmp_path):
    assert rule_reasons(rec(), RuleConfig()) == []
    assert rule_reasons(rec(), RuleConfig(), check_image=True) == ["image_missing: /nonexistent/x.png"]
    p = tmp_path / "x.png"
    p.write_bytes(b"x")
    assert rule_reasons(rec(image_path=str(p)), RuleConfig(), check_image=True) == []


def test_several_failures_are_all_reported():
    bad = rec(rationale="Score 55 ``` x", target="<think>Score 55 ``` x</think><answer>55</answer>", score=60.0)
    assert set(codes(bad)) == {"answer_mismatch", "contamination", "words", "number_in_rationale"}


def test_covered_aspects_word_start_matching():
    assert covered_aspects("") == []
    assert covered_aspects("Strong COMPOSITION and colours; the mood evokes calm.") == [
        "emotion",
        "composition",
        "visual_elements",
    ]
    assert "visual_elements" not in covered_aspects("an outline of a discipline")  # no mid-word matches
    assert "composition" in covered_aspects("it follows the rule of thirds")
    assert covered_aspects("overall") == ["gestalt", "overall"]
    assert len(ASPECT_KEYWORDS) == 8


def test_style_chooses_word_bounds_and_aspect_check():
    """A long (slow) IQA rationale and a short (fast) IAA one pass under their style's rules, and fail the task's
    default ones; the detail names the style when it is not the task's default."""
    long_iqa = rec("iqa", IAA_OK)
    assert rule_reasons(long_iqa, RuleConfig(), style="slow") == []
    assert rule_reasons(long_iqa, RuleConfig()) == [f"words: iqa {len(IAA_OK.split())} > 65"]
    short_iaa = rec("iaa", IQA_OK)
    assert rule_reasons(short_iaa, RuleConfig(), style="fast") == []
    assert set(codes(short_iaa)) == {"words", "aspects"}
    assert rule_reasons(rec("iaa", IQA_OK + " " + IQA_OK + " " + IQA_OK), RuleConfig(), style="fast")[0].startswith(
        "words: iaa fast"
    )
    thin = rec("iqa", " ".join(["Sharp edges and clean noise-free surfaces."] * 12))  # long, few aspects
    assert [c.split(":")[0] for c in rule_reasons(thin, RuleConfig(), style="slow")] == ["aspects"]

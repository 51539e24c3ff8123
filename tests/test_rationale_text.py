"""Teacher reply post-processing, attribute notes, API key lookup and redaction."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_contracts.config.rationales import EndpointConfig
from tatar_core.llm.keys import NO_KEY, MissingSecret, Redactor, resolve_api_key
from tatar_core.rationales.teacher_prompts import attribute_notes
from tatar_core.rationales.text import (
    EmptyRationale,
    TextLimits,
    apply_limits,
    clean_rationale,
    extract_think,
    split_sentences,
)

FAST = TextLimits(max_sentences=2, max_words=50)


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("<think>Sharp edges. Low noise. Extra.</think><answer>55</answer>", "Sharp edges. Low noise."),
        ("<think>first block.</think> <think>second.</think><answer>1</answer>", "first block."),
        ("Blur dominates. Edges are soft.<answer>55.2", "Blur dominates. Edges are soft."),  # stop cut </answer>
        ("Blur dominates.\n<answer>55</answer> trailing", "Blur dominates. trailing"),
        ("<think>Noisy <tool_call>sky</tool_call> and dark.", "Noisy sky and dark."),  # unclosed think
        ("<think>Soft, e.g. on the face. Dark image. Third.</think>", "Soft, e.g. on the face. Dark image."),
        ("<think>  spaced\n\n  out  </think>", "spaced out"),
    ],
)
def test_clean_fast(reply, expected):
    assert clean_rationale(reply, FAST) == expected


def test_word_clamp_and_whole_sentences():
    long = " ".join(["word"] * 80) + "."
    assert len(clean_rationale(f"<think>{long}</think>", FAST).split()) == 50
    slow = TextLimits(max_words=12, whole_sentences=True)
    assert (
        apply_limits("One two three four five. Six seven eight nine ten. Eleven twelve thirteen.", slow)
        == "One two three four five. Six seven eight nine ten."
    )
    assert split_sentences('He said "Stop." Then 3.5 units! Done') == ['He said "Stop."', "Then 3.5 units!", "Done"]


@pytest.mark.parametrize("reply", ["", "<think></think><answer>50</answer>", "<answer>50</answer>", "   "])
def test_empty_rationale_raises(reply):
    with pytest.raises(EmptyRationale):
        clean_rationale(reply, FAST)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .!?<>/thinkswer\n")), max_size=300))
def test_clean_never_leaves_tags_or_exceeds_limits(text):
    try:
        out = clean_rationale(text, FAST)
    except EmptyRationale:
        return
    assert len(out.split()) <= 50 and len(split_sentences(out)) <= 2
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        assert tag not in out
    assert extract_think(out) == out  # idempotent


def test_attribute_notes_order_and_truncation():
    attrs = {"Overall Gestalt": "g", "Visual Elements": "v" * 2000, "Composition & Structure": "c", "misc": "m"}
    notes = attribute_notes(json.dumps(attrs)).splitlines()
    assert [n.split(":")[0] for n in notes] == [
        "- Visual elements",
        "- Composition and structure",
        "- Overall gestalt",
        "- misc",
    ]
    assert len(notes[0]) == len("- Visual elements: ") + 1200
    assert attribute_notes("") == ""
    with pytest.raises(ValueError, match="not valid JSON"):
        attribute_notes("{oops")


def test_resolve_api_key(monkeypatch):
    ep = EndpointConfig(base_url="https://api.example.com/v1", api_key_env="TATAR_TEST_KEY_X")
    monkeypatch.delenv("TATAR_TEST_KEY_X", raising=False)
    with pytest.raises(MissingSecret, match="TATAR_TEST_KEY_X"):
        resolve_api_key(ep)
    assert resolve_api_key(ep.model_copy(update={"base_url": "http://127.0.0.1:9/v1"})) == NO_KEY
    monkeypatch.setenv("TATAR_TEST_KEY_X", "k-env")
    assert resolve_api_key(ep) == "k-env"
    with_block = ep.model_copy(update={"api_key_secret": "teacher-key"})
    assert resolve_api_key(with_block, secret_resolver=lambda name: f"k-{name}") == "k-teacher-key"
    with pytest.raises(MissingSecret, match="no secret resolver"):
        resolve_api_key(with_block)

    def broken(name):
        raise KeyError("sk-should-not-leak-123456")

    with pytest.raises(MissingSecret) as e:
        resolve_api_key(with_block, secret_resolver=broken)
    assert "sk-should" not in str(e.value) and "teacher-key" in str(e.value)


def test_redactor_masks_key_and_fragments():
    key = "sk-tatar-SECRET-abcdefghijklmnop"
    r = Redactor([key])
    assert r(f"bad key {key}!") == "bad key ***!"
    assert key[-10:] not in r(f"Incorrect API key provided: sk-tat****{key[-10:]}")
    assert r("nothing here") == "nothing here"
    assert Redactor([NO_KEY])("EMPTY stays") == "EMPTY stays"

"""Guard for the one private trl function the project replaces: `trl.trainer.utils._use_triton`.

`tatar_core.training.launch.score_label_positions_only` makes trl's fused LM head score only the labelled positions
on CPU (same loss and gradients, an SFT step 2.3x faster; tests/test_train_sft.py checks the numbers). trl 1.16 has no
public switch for it: `add_fused_lm_head` (used by SFTTrainer and GRPOTrainer) decides with the module global
`_use_triton(device)` at every forward. These tests fail, with what to re-check, when a trl upgrade moves or changes
that function; the patch itself is a no-op when the function is gone, so training still runs, only slower.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import pytest
import torch

from tatar_core.training import launch

RECHECK = (
    "re-check tatar_core.training.launch.score_label_positions_only against the new trl: does the fused LM "
    "head (trl.trainer.utils.add_fused_lm_head) still choose label-only scoring with trl.trainer.utils."
    "_use_triton(device)? Is there a public option now? Then update this test"
)


def _pinned_trl() -> str:
    deps = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(re.fullmatch(r"trl==(\S+)", d).group(1) for d in deps if d.startswith("trl=="))


def test_trl_is_the_version_the_patch_was_written_for():
    import trl

    assert trl.__version__ == _pinned_trl() == "1.16.0", f"trl {trl.__version__}: {RECHECK}"


def test_the_private_function_is_where_the_fused_lm_head_reads_it():
    import trl.trainer.grpo_trainer as grpo_trainer
    import trl.trainer.sft_trainer as sft_trainer
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    assert callable(original), f"trl.trainer.utils._use_triton is gone: {RECHECK}"
    original = getattr(original, "__wrapped__", original)
    assert list(inspect.signature(original).parameters) == ["device"], f"_use_triton's signature changed: {RECHECK}"
    # both trainers patch their model with this add_fused_lm_head, whose forward looks the name up in its module
    for trainer in (sft_trainer, grpo_trainer):
        assert trainer.add_fused_lm_head is trl_utils.add_fused_lm_head, f"{trainer.__name__}: {RECHECK}"
    fused = [
        c
        for c in trl_utils.add_fused_lm_head.__code__.co_consts
        if inspect.iscode(c) and c.co_name == "_fused_forward"
    ]
    assert len(fused) == 1 and "_use_triton" in fused[0].co_names, f"_fused_forward no longer reads it: {RECHECK}"
    assert trl_utils.add_fused_lm_head.__globals__ is vars(trl_utils)
    source = inspect.getsource(trl_utils.add_fused_lm_head)
    assert "compact = _use_triton(hidden_states.device)" in source and "hidden_states[mask] if compact" in source, (
        f"the fused LM head's label-only branch changed: {RECHECK}"
    )


def test_patch_scores_label_positions_only_on_cpu(monkeypatch):
    import trl.kernels.chunked_logprob as kernels
    import trl.trainer.utils as trl_utils

    assert hasattr(trl_utils, "_use_triton"), f"trl.trainer.utils._use_triton is gone: {RECHECK}"
    original = getattr(trl_utils._use_triton, "__wrapped__", trl_utils._use_triton)
    monkeypatch.setattr(trl_utils, "_use_triton", original)
    assert original(torch.device("cpu")) is False, f"trl now scores label positions only on CPU itself: {RECHECK}"
    launch.score_label_positions_only()
    launch.score_label_positions_only()  # idempotent
    patched = trl_utils._use_triton
    assert patched is not original and patched.__wrapped__ is original
    assert patched(torch.device("cpu")) is True
    assert patched(torch.device("meta")) == original(torch.device("meta"))  # other devices keep trl's choice
    assert kernels._use_triton is not patched  # the kernels still fold their tiles in torch on CPU


@pytest.mark.parametrize("name", ["sft", "grpo"])
def test_both_training_stages_apply_it(name):
    from tatar_core.training import grpo, sft

    source = inspect.getsource({"sft": sft, "grpo": grpo}[name])
    assert "launch.score_label_positions_only()" in source

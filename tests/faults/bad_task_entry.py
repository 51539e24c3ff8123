"""Test-only entry of a launched GRPO job (`accelerate launch tests/faults/bad_task_entry.py grpo SPEC`): the product's
entry point, except that on process 1 the reward functions see one completion with an invalid task value, a real
validation failure of `tatar_core.method.rewards._check_tasks`. Used by tests/test_collective_errors.py; the product
has no hook for it."""

import os
import sys
import time
from pathlib import Path

import tatar_core.method.rewards as rewards

_check = rewards._check_tasks


def _bad_on_process_1(tasks):
    if os.environ.get("RANK") == "1":
        marker = Path(os.environ["TATAR_FAULT_MARKER"])
        if not marker.exists():
            marker.write_text(str(time.time()))  # when the fault happened
        tasks = [*list(tasks)[:-1], "bogus"]
    return _check(tasks)


rewards._check_tasks = _bad_on_process_1

from tatar_core.training.entry import main  # noqa: E402

sys.exit(main())

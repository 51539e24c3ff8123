"""How the `tatar` flow runs its stages: each as its own deployment run (routed to the stage's work pool) or
in-process as subflows."""

from typing import Any, Literal, Optional

from pydantic import Field

from data_contracts.config.base import Section

StageName = Literal["samples", "rationales", "filtered", "sft", "grpo", "benchmark"]


class OrchestrationConfig(Section):
    mode: Literal["auto", "deployments", "subflow"] = Field(
        "auto",
        description="deployments: start each unfinished stage's deployment (tatar-<stage>/<stage>) on its "
        "work pool and wait for it; subflow: run the stages in the tatar flow's own process; auto: deployments "
        "when the tatar flow itself runs from a deployment (under a Prefect server), else subflow",
    )
    poll_seconds: float = Field(2.0, gt=0, description="how often the tatar flow checks a started stage run")
    stage_timeout_s: Optional[float] = Field(
        None,
        gt=0,
        description="fail when a started stage run has not finished after this many seconds (None: wait; "
        "a stage whose pool has no worker stays Scheduled/Late until one starts)",
    )
    job_variables: dict[StageName, dict[str, Any]] = Field(
        default_factory=dict,
        description="per stage: job variables for its run, over those of prefect.yaml "
        "(e.g. {sft: {env: {NCCL_DEBUG: INFO}}})",
    )

"""Benchmark stage: which sets to score and how."""

from typing import Any, Literal, Optional

from pydantic import Field

from data_contracts.config.base import Section
from data_contracts.config.samples import DatasetSource


class BenchmarkConfig(Section):
    include_demo_test: bool = Field(True, description="score the samples stage's split `demo_split`")
    demo_split: Literal["test", "validation", "train_photos"] = Field(
        "test",
        description="which split of the samples stage to score: test for reporting, validation for "
        "choosing settings, train_photos for the fit on the training photos' own versions (in-sample; generated "
        "references left out)",
    )
    compare: list[Literal["base", "sft"]] = Field(
        [],
        description="also score these models on the same images: base = the model before SFT, sft = the SFT "
        "checkpoint (the GRPO checkpoint is always scored)",
    )
    baselines: list[Literal["laplacian", "random_forest"]] = Field(
        [],
        description="classical IQA baselines measured on the same images: the Laplacian-variance floor and a "
        "random forest on simple numpy features fitted on the train split's IQA images",
    )
    datasets: list[DatasetSource] = Field([], description="benchmarks in their native formats (split=test)")
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = 256
    draft_tokens: int = Field(
        6,
        ge=0,
        description="speculative decoding: drafted tokens checked per pass (0 = one token per pass); "
        "the completions are the greedy ones either way",
    )
    readout: Literal["greedy", "expected"] = Field(
        "greedy", description="expected = probability-weighted score from the answer tokens"
    )
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples for 95% intervals (0 = off)")
    max_items: Optional[int] = Field(None, description="score at most this many images per benchmark")
    seed: int = Field(0, description="bootstrap seed")
    device: Optional[str] = Field(
        None,
        description="cpu | cuda | cuda:N (default: cuda when available); with "
        "several scoring processes each gets its own GPU",
    )
    engine: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="transformers = the project's batched scorer (in this process when there is one "
        "shard); vllm = vLLM's offline engine in a scoring worker process (it must be installed in the interpreter "
        "that runs the worker)",
    )
    num_gpus: Optional[int] = Field(
        None,
        ge=1,
        description="scoring processes, one engine per GPU, each scoring one shard of all benchmarks' "
        "images (split by expected cost); default: every visible GPU, 1 on CPU. On CPU a value > 1 runs that many "
        "CPU processes",
    )
    vllm: dict[str, Any] = Field(
        default_factory=dict,
        description="engine: vllm only: extra keyword arguments for vllm.LLM (e.g. "
        "gpu_memory_utilization, max_model_len, enable_prefix_caching, speculative_config), passed through",
    )

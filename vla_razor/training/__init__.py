"""The training harness: what every loop shares (:mod:`.loop`) and what every fine-tuning run shares
(:mod:`.finetune`), on both tracks."""

from .finetune import FinetuneHarness, FinetuneHarnessConfig, fingerprint
from .loop import HarnessConfig, TrainingLoop

__all__ = ["FinetuneHarness", "FinetuneHarnessConfig", "HarnessConfig", "TrainingLoop", "fingerprint"]

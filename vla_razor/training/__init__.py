"""The training harness: every trainer's shared config level (:mod:`.config`), what every loop shares
(:mod:`.loop`) and what every fine-tuning run shares (:mod:`.finetune`), on both tracks."""

from .config import FinetuneFields, TrainerConfig
from .finetune import FinetuneHarness, fingerprint
from .loop import TrainingLoop

__all__ = ["FinetuneFields", "FinetuneHarness", "TrainerConfig", "TrainingLoop", "fingerprint"]

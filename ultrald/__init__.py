"""ultrald: Localization Distillation (LD) for Ultralytics YOLO."""

__version__ = "0.5.1"

from .engine.trainer import LDOBBTrainer, LDTrainer, trainer_for  # noqa: E402

__all__ = ("LDOBBTrainer", "LDTrainer", "__version__", "trainer_for")

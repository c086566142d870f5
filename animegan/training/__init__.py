"""Training: TrainConfig (with the reference presets), the resumable Trainer, and the checkpoint format."""

from animegan.training.config import PRESETS, TrainConfig
from animegan.training.trainer import Trainer, TrainProgress, TrainResult

__all__ = ["PRESETS", "TrainConfig", "TrainProgress", "TrainResult", "Trainer"]

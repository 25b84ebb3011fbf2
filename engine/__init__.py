"""The inference engine: frozen backbone + per-task bias rows + per-task heads."""

from engine.backbone import Backbone, default_backbone_path, load_backbone, load_classifier
from engine.engine import Engine, Prediction
from engine.errors import EmptyInput, EngineError, InvalidInput, NoFreeSlot, PairMismatch, UnknownTask, WrongInputType
from engine.registry import TaskHandle, TaskRegistry

__all__ = [
    "Backbone", "EmptyInput", "Engine", "EngineError", "InvalidInput", "NoFreeSlot", "PairMismatch", "Prediction",
    "TaskHandle", "TaskRegistry", "UnknownTask", "WrongInputType", "default_backbone_path", "load_backbone", "load_classifier",
]

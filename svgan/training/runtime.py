"""Where and how training runs: seeds, determinism, mixed precision, XLA, tf.distribute.

On CPU the defaults are plain float32 ``tf.function`` steps: XLA and float16 are
both slower there (measured in shared/TF-NOTES.md). "auto" turns mixed precision
and XLA on when a GPU is visible; several GPUs get a MirroredStrategy, and a
TF_CONFIG environment variable a MultiWorkerMirroredStrategy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .._tf import import_tf
from ..config import TrainConfig
from ..errors import ConfigError


@dataclass
class Runtime:
    strategy: object  # tf.distribute.Strategy
    mixed_precision: bool
    jit_compile: bool
    gpus: int

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync


def _choose(setting: str, default: bool) -> bool:
    return default if setting == "auto" else setting == "on"


def select_strategy(kind: str, gpus: int):
    tf = import_tf()
    if kind == "auto":
        if os.environ.get("TF_CONFIG"):
            kind = "multi_worker"
        elif gpus > 1:
            kind = "mirrored"
        else:
            kind = "none"
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if kind == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("train.distribute=multi_worker needs the TF_CONFIG environment variable")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise ConfigError(f"TF_CONFIG is not valid JSON: {e}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown train.distribute {kind!r}")


def configure(train: TrainConfig, seed: int) -> Runtime:
    """Seed everything and choose precision, compilation and strategy. Call before building models."""
    tf = import_tf()
    import keras

    gpus = len(tf.config.list_physical_devices("GPU"))
    mixed = _choose(train.mixed_precision, gpus > 0)
    jit = _choose(train.jit_compile, gpus > 0)
    keras.utils.set_random_seed(seed)
    if train.deterministic and not jit:
        # Bit-identical runs across processes; XLA's MaxPool gradient has no deterministic kernel.
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    return Runtime(select_strategy(train.distribute, gpus), mixed, jit, gpus)

"""Where and how training runs: seeds, determinism, mixed precision, XLA, tf.distribute.

On CPU the defaults are plain float32 ``tf.function`` steps: XLA and float16 are
both slower there. "auto" turns mixed float16 and XLA on when a GPU is visible;
``mixed_precision: bfloat16`` computes in bfloat16 where the hardware does so natively
(a GPU, or a CPU with AVX512-BF16 or AMX instructions) and stays float32 elsewhere.
Several GPUs get a MirroredStrategy, and a TF_CONFIG environment variable a
MultiWorkerMirroredStrategy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .._tf import import_tf
from ..config import TrainConfig
from ..errors import ConfigError


# /proc/cpuinfo flags of x86 CPUs that compute bfloat16 dot products in hardware.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass
class Runtime:
    strategy: object  # tf.distribute.Strategy
    policy: str  # Keras dtype policy: "float32", "mixed_float16" or "mixed_bfloat16"
    jit_compile: bool
    gpus: int

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def loss_scaling(self) -> bool:
        # float16's narrow exponent underflows small gradients; bfloat16 has float32's exponent.
        return self.policy == "mixed_float16"


def cpu_computes_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 instructions (Linux's cpuinfo flags; False where unreadable)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)


def choose_policy(setting: str, gpus: int) -> str:
    """The dtype policy of ``train.mixed_precision`` on this machine."""
    if setting == "bfloat16":
        # Without bfloat16 instructions the CPU would convert every operand: float32 there.
        return "mixed_bfloat16" if gpus > 0 or cpu_computes_bfloat16() else "float32"
    return "mixed_float16" if _choose(setting, gpus > 0) else "float32"


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
    policy = choose_policy(train.mixed_precision, gpus)
    jit = _choose(train.jit_compile, gpus > 0)
    keras.utils.set_random_seed(seed)
    if train.deterministic and not jit:
        # Bit-identical runs across processes; XLA's MaxPool gradient has no deterministic kernel.
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(policy)
    return Runtime(select_strategy(train.distribute, gpus), policy, jit, gpus)

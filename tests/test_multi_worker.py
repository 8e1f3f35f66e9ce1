"""Two worker processes on loopback share one run through TF_CONFIG (MultiWorkerMirroredStrategy)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

# Global steps. tf.distribute splits each of the pipeline's batches (pipeline.batch_size windows) between
# the two workers, so that one process training on the same pipeline sees the same global batches.
STEPS = 4

WORKER = """
import sys; sys.path.insert(0, {tests!r})
import numpy as np
from conftest import tiny_config
from svgan.data.manifest import load_manifest
from svgan.training.fit import Trainer
cfg = tiny_config("brats", "train.steps_per_epoch={steps}", "train.supervised_epochs=0")
trainer = Trainer(cfg, load_manifest({prepared!r}), {run!r})
assert trainer.runtime.replicas == 2, trainer.runtime.replicas
steps = [trainer.gan.step(batch) for batch in trainer._dataset(0, 0)]
assert len(steps) == {steps}, len(steps)
np.savez({out!r}, *trainer.G.get_weights())
"""

SINGLE = """
import sys; sys.path.insert(0, {tests!r})
import numpy as np
from conftest import tiny_config
from svgan.data.manifest import load_manifest
from svgan.training.fit import Trainer
cfg = tiny_config("brats", "train.steps_per_epoch={steps}", "train.supervised_epochs=0")
trainer = Trainer(cfg, load_manifest({prepared!r}), {run!r})
assert trainer.runtime.replicas == 1
np.savez({initial!r}, *trainer.G.get_weights())
for batch in trainer._dataset(0, 0):
    trainer.gan.step(batch)
np.savez({out!r}, *trainer.G.get_weights())
"""


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _weights(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


@pytest.mark.slow
def test_two_workers_end_with_the_weights_of_one_process_on_the_same_global_batches(brats_prepared, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    # One CPU thread pool each, as on two one-core machines.
    base_env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "PYTHONPATH": REPO}
    tests = os.path.join(REPO, "tests")
    workers = []
    for index in range(2):
        script = WORKER.format(tests=tests, prepared=brats_prepared, run=str(tmp_path / f"worker{index}"),
                               steps=STEPS, out=str(tmp_path / f"worker{index}.npz"))
        env = {**base_env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-3000:]
    single = SINGLE.format(tests=tests, prepared=brats_prepared, run=str(tmp_path / "single"), steps=STEPS, initial=str(tmp_path / "initial.npz"),
                           out=str(tmp_path / "single.npz"))
    result = subprocess.run([sys.executable, "-c", single], env={k: v for k, v in base_env.items() if k != "TF_CONFIG"},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    first, second, alone, initial = (_weights(tmp_path / f"{name}.npz") for name in ("worker0", "worker1", "single", "initial"))
    for a, b, c in zip(first, second, alone):
        np.testing.assert_array_equal(a, b)  # the workers apply the same all-reduced updates
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)  # and those of one process on the global batches
    moved = max(float(np.abs(a - i).max()) for a, i in zip(first, initial))
    assert moved > 1e-3  # the steps did change the weights: the agreement above is not that of untouched ones

"""Training throughput, whole-volume inference time and peak memory of the core model.

    python benchmarks/model_speed.py            # both configurations, training and inference each in its own process
    python benchmarks/model_speed.py --only demo|full [--part train|infer]

For each configuration it prints:
- training throughput in slices/s (batch x T / seconds per GAN step), eager and with tf.function,
  median of a few steps after warm-up, on random tensors of the right shape;
- inference time for one volume, all slices, through the saved generator.keras:
  the demo volume (62 slices at 80 x 80) and a full BraTS volume (155 slices, 240 x 240 padded to 256);
- peak resident memory (RSS) of each process (training and inference measured apart).

demo: configs/demo_brats.yaml (base 16, 80 x 80, T = 8, 4 modalities, batch 2)
full: paper-size model (base 32, 256 x 256, T = 8, 4 modalities, batch 2)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CONFIGS = {
    "demo": {"file": "configs/demo_brats.yaml", "size": 80, "slices": 62, "overrides": []},
    "full": {"file": "configs/brats2017.yaml", "size": 256, "slices": 155, "overrides": []},
}


def _median_step(fn, batch, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(batch)
        float(out["g_loss"])  # wait for the result
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(name: str, part: str) -> None:
    import numpy as np

    from svgan._tf import import_tf
    from svgan.config import load_config
    from svgan.models import build_discriminator, build_generator
    from svgan.training import runtime
    from svgan.training.gan_step import GANStep

    tf = import_tf()

    spec = CONFIGS[name]
    cfg = load_config(os.path.join(REPO, spec["file"]), spec["overrides"])
    size, t, b = spec["size"], cfg.pipeline.sequence_length, cfg.pipeline.batch_size
    rt = runtime.configure(cfg.train, cfg.seed)
    G = build_generator(cfg.model, (size, size), 4, 4, 2)
    rng = np.random.default_rng(0)
    if part == "infer":  # the generator alone, as a prediction command holds it
        _inference(name, spec, G, t, b, rng)
        return
    D = build_discriminator(cfg.model, (size, size), 4, 4)
    gan = GANStep(cfg, G, D, np.ones(4), np.ones(2), rt)
    batch = {"image": tf.constant(rng.normal(size=(b, t, size, size, 4)).astype(np.float32)),
             "label": tf.constant(rng.integers(0, 4, size=(b, t, size, size)).astype(np.int32)),
             "disease": tf.constant(rng.integers(0, 2, size=(b,)).astype(np.int32))}
    slices = b * t
    compiled = _median_step(gan.step, batch, warmup=2, repeats=5 if name == "demo" else 3)
    eager = _median_step(gan._replica_step, batch, warmup=1, repeats=3 if name == "demo" else 2)
    print(f"[{name}] training: tf.function {slices / compiled:.1f} slices/s ({compiled:.2f} s/step), "
          f"eager {slices / eager:.1f} slices/s ({eager:.2f} s/step); batch {b} x T {t} at {size}x{size}, "
          f"base {cfg.model.base_filters} filters, {G.count_params() + D.count_params():,} parameters")
    print(f"[{name}] training peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def _inference(name, spec, G, t, b, rng) -> None:
    import keras
    import numpy as np

    from svgan.evaluation.inference import make_predict_fn, predict_patient

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "generator.keras")
        G.save(path)
        loaded = keras.models.load_model(path)
        predict = make_predict_fn(loaded)
        size = spec["size"]
        volume = rng.normal(size=(1, spec["slices"], size, size, 4)).astype(np.float32)
        predict_patient(predict, volume[:, :t], t, b)  # trace once, as a prediction command would on its first patient
        start = time.perf_counter()
        probs, _ = predict_patient(predict, volume, t, b)
        seconds = time.perf_counter() - start
    print(f"[{name}] inference: {seconds:.1f} s for one volume of {spec['slices']} slices at {size}x{size} "
          f"through the saved model (windows of {t} slices, {b} at a time)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{name}] inference peak RSS: {peak_mb:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CONFIGS))
    parser.add_argument("--part", choices=["train", "infer"])
    args = parser.parse_args()
    if args.only and args.part:
        run(args.only, args.part)
        return
    for name in [args.only] if args.only else CONFIGS:  # separate processes: separate peak-memory figures
        for part in [args.part] if args.part else ["train", "infer"]:
            subprocess.run([sys.executable, os.path.abspath(__file__), "--only", name, "--part", part], check=True)


if __name__ == "__main__":
    main()

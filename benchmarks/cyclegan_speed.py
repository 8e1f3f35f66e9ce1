"""CycleGAN training step time (both generators and both discriminators, batch 1) on this machine.

    python benchmarks/cyclegan_speed.py [--size 128] [--filters 32] [--steps 20]

Default: 128 x 128 RGB, the package's CycleGAN defaults (U-Net generators with 32 filters at the
first of 4 levels, PatchGAN discriminators with 64), least-squares adversarial loss with cycle
and identity terms, as ``svgan synthesize`` trains it. Prints the median seconds per step after
3 warm-up steps (tracing included there), and the peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--filters", type=int, default=None, help="generator filters (default: the config's)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    from svgan._tf import import_tf
    from svgan.config import CycleGANConfig

    tf = import_tf()
    from svgan.synthesis.cyclegan import CycleGAN

    cfg = CycleGANConfig()
    if args.filters:
        cfg.filters = args.filters
    model = CycleGAN(cfg, (args.size, args.size))
    rng = np.random.default_rng(0)
    a = tf.constant(rng.uniform(-1, 1, (cfg.batch_size, args.size, args.size, 3)).astype(np.float32))
    b = tf.constant(rng.uniform(-1, 1, (cfg.batch_size, args.size, args.size, 3)).astype(np.float32))
    for _ in range(3):
        model.step(a, b)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        losses = model.step(a, b)
        float(losses["g_loss"])
        times.append(time.perf_counter() - start)
    print(f"CycleGAN {args.size}x{args.size}, generator filters {cfg.filters}, discriminator filters "
          f"{cfg.discriminator_filters}, batch {cfg.batch_size}: {statistics.median(times):.3f} s/step "
          f"(median of {args.steps}; min {min(times):.3f}); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; {os.cpu_count()} CPU(s)")


if __name__ == "__main__":
    main()

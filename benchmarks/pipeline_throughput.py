"""Input pipeline throughput (sequences/s) on the demo set and on full-size BraTS cases.

    python benchmarks/pipeline_throughput.py [--full-patients 2] [--skip-full]

Prints one line per figure. The demo set is generated into a temporary folder
unless demo_data/prepared/brats (from `make demo`) exists. The full-size part
writes 240 x 240 x 155 phantoms and prepares them with configs/brats2017.yaml
(N4 included), so it also reports preparation time per patient.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from svgan._tf import import_tf  # noqa: E402
from svgan.config import load_config  # noqa: E402
from svgan.data.manifest import load_manifest  # noqa: E402
from svgan.data.pipeline import make_dataset  # noqa: E402
from svgan.data.prepare import prepare_dataset  # noqa: E402
from svgan.data.synthetic.brats import write_brats_cohort  # noqa: E402


def throughput(manifest, split, cfg, training: bool, epochs: int = 2) -> tuple[float, int]:
    ds = make_dataset(manifest, split, cfg, training=training)
    next(iter(ds))  # warm-up: graph construction and the first file read
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in ds:
            count += int(batch["image"].shape[0])
    return count / (time.perf_counter() - start), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-patients", type=int, default=2)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    import_tf()
    tmp = tempfile.TemporaryDirectory(prefix="svgan-bench-")

    demo_cfg = load_config(os.path.join(REPO, "configs", "demo_brats.yaml"))
    demo = os.path.join(REPO, "demo_data", "prepared", "brats")
    if not os.path.isfile(os.path.join(demo, "manifest.json")):
        raw = os.path.join(tmp.name, "demo_raw")
        write_brats_cohort(raw, patients=24, seed=0, shape=(96, 96, 62))
        demo = os.path.join(tmp.name, "demo_prepared")
        prepare_dataset(demo_cfg, raw, demo, workers=2)
    m = load_manifest(demo)
    shape = f"T={demo_cfg.pipeline.sequence_length}, 80x80x4, batch {demo_cfg.pipeline.batch_size}"
    for training in (True, False):
        rate, n = throughput(m, "train", demo_cfg, training)
        mode = "train (augmented)" if training else "evaluation"
        print(f"demo BraTS {mode}: {rate:.1f} sequences/s ({n} sequences, {shape})")

    if args.skip_full:
        return
    full_cfg = load_config(os.path.join(REPO, "configs", "brats2017.yaml"), ["prepare.split_fractions=[1.0, 0.0, 0.0]"])
    raw = os.path.join(tmp.name, "full_raw")
    start = time.perf_counter()
    write_brats_cohort(raw, patients=args.full_patients, seed=1)
    print(f"full-size synth: {(time.perf_counter() - start) / args.full_patients:.1f} s per 240x240x155 patient")
    out = os.path.join(tmp.name, "full_prepared")
    start = time.perf_counter()
    report = prepare_dataset(full_cfg, raw, out, workers=1)
    assert not report.failed, report.failed
    print(f"full-size prepare (N4 + z-score + Nyul, 1 worker): {(time.perf_counter() - start) / args.full_patients:.1f} s per patient")
    m = load_manifest(out)
    for training in (True, False):
        rate, n = throughput(m, "train", full_cfg, training, epochs=1)
        mode = "train (augmented)" if training else "evaluation"
        print(f"full-size BraTS {mode}: {rate:.1f} sequences/s ({n} sequences, T=8, 256x256x4, batch 2)")


if __name__ == "__main__":
    main()

"""Training step time, CPU split and page faults, and whole-volume inference, of the core model.

    python benchmarks/model_speed.py                      # every configuration, training and inference
    python benchmarks/model_speed.py --only real-acdc --part train
    python benchmarks/model_speed.py --compare            # also with the allocator defaults undone (before/after)

Each measurement runs in its own process (separate peak-memory figures, and the
allocator settings can only be made before TensorFlow starts). For each it prints:
- training: median seconds per step (tf.function) after warm-up, for the adversarial step
  (Eq. 5: D and G updated) and the supervised step (G alone, ``train.supervised_epochs``),
  and per step the user and system CPU seconds and the minor page faults (getrusage over
  the timed steps), on random tensors of the configuration's shape; the step's floating-point
  operations as TensorFlow's profiler counts them and the rate that makes, as a share of this
  process's float32 matmul rate;
- inference: seconds for one whole volume through the saved generator.keras in each window
  mode of ``svgan predict`` (``central``, its default: each slice encoded and decoded once,
  the recurrence over windows every half window; ``average``: the whole model on windows
  every half window, averaged, twice the arithmetic; ``single``: one pass), each in its own
  process with its peak resident memory; the arithmetic of one pass (multiply-adds of every
  convolution and recurrence, counted from the layers' shapes), the rate each mode ran at
  counted on that one pass, and this process's float32 matmul rate (and 3x3 convolution
  rate) to compare it with.

``--compare`` runs every measurement three times: with svgan's allocator defaults
(svgan/_memory.py: TensorFlow's BFC CPU allocator, raised glibc thresholds, one glibc
arena), with glibc's per-thread arenas back (``MALLOC_ARENA_MAX=16``), and with
``TF_CPU_ALLOCATOR_USE_BFC=false SVGAN_MALLOPT=0`` (TensorFlow's and glibc's defaults).
Training steps take their batches from a small tf.data pipeline, as a run does.

demo:      configs/demo_brats.yaml  (base 16, 80 x 80, T = 8, 4 modalities, batch 2; volume 62 slices)
real-acdc: configs/real_acdc.yaml   (base 32, 128 x 128 (training steps on 96 x 96 windows), T = 16 (8 ED + 8 ES), 1 channel, batch 2; 10 slices x 2 phases)
full:      configs/brats2017.yaml   (paper size: base 32, 256 x 256, T = 8, 4 modalities, batch 2; volume 155 slices)
"""

from __future__ import annotations

import argparse
import itertools
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
    "demo": {"file": "configs/demo_brats.yaml", "size": 80, "channels": 4, "diseases": 2, "phases": 1, "slices": 62},
    "real-acdc": {"file": "configs/real_acdc.yaml", "size": 128, "channels": 1, "diseases": 5, "phases": 2, "slices": 10},
    "full": {"file": "configs/brats2017.yaml", "size": 256, "channels": 4, "diseases": 2, "phases": 1, "slices": 155},
}
NUM_CLASSES = 4
INFERENCE_MODES = {"central": "new default (each slice encoded and decoded once, recurrence per overlapping window)",
                   "average": "previous default (overlapping windows averaged)",
                   "single": "one pass (consecutive windows, each slice once)"}
UNDO_ALLOCATOR = {"TF_CPU_ALLOCATOR_USE_BFC": "false", "SVGAN_MALLOPT": "0"}
# glibc's default arena limit on 64-bit systems is 8 per core: 16 on 2 cores.
PER_THREAD_ARENAS = {"MALLOC_ARENA_MAX": "16"}


def _usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def _timed_steps(fn, batches, warmup: int, repeats: int) -> dict:
    """``batches``: one batch (a dict of tensors) or an iterator of batches."""
    batches = itertools.repeat(batches) if isinstance(batches, dict) else batches
    for _ in range(warmup):
        float(fn(next(batches))["g_loss"])
    times = []
    before = _usage()
    for _ in range(repeats):
        batch = next(batches)
        start = time.perf_counter()
        float(fn(batch)["g_loss"])  # waits for the result
        times.append(time.perf_counter() - start)
    after = _usage()
    user, system, faults = (b - a for a, b in zip(before, after))
    return {"s_per_step": statistics.median(times), "user": user / repeats, "system": system / repeats,
            "faults": faults / repeats}


def _allocator_label() -> str:
    if os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") == "false":
        return "allocator defaults undone"
    if os.environ.get("MALLOC_ARENA_MAX") == PER_THREAD_ARENAS["MALLOC_ARENA_MAX"]:
        return "svgan allocator but glibc's per-thread arenas"
    return "svgan allocator"


def run(name: str, part: str, overrides: list[str], mode: str = "central") -> None:
    import numpy as np

    from svgan._tf import import_tf
    from svgan.config import load_config
    from svgan.losses.registry import build_classification_loss, uses_cosine_classifier
    from svgan.models import build_discriminator, build_generator
    from svgan.training import runtime
    from svgan.training.gan_step import GANStep
    from svgan.training.stages import ADVERSARIAL, SUPERVISED

    tf = import_tf()
    spec = CONFIGS[name]
    cfg = load_config(os.path.join(REPO, spec["file"]), overrides)
    size, t, b, c = spec["size"], cfg.pipeline.sequence_length, cfg.pipeline.batch_size, spec["channels"]
    rt = runtime.configure(cfg.train, cfg.seed)
    # Training steps run on the configuration's crops where it trains on crops (pipeline.crop_size);
    # inference always sees whole images.
    if part != "infer" and cfg.pipeline.crop_size:
        h, w = cfg.pipeline.crop_size
        if h != w:
            sys.exit("model_speed.py times square inputs; pipeline.crop_size is not square")
        size = h
    G = build_generator(cfg.model, (size, size), c, NUM_CLASSES, spec["diseases"], spec["phases"],
                        cosine_classifier=uses_cosine_classifier(cfg.model, cfg.loss))
    rng = np.random.default_rng(0)
    if part == "infer":  # the generator alone, as a prediction command holds it
        _inference(name, spec, G, t, b, rng, mode)
        return
    D = build_discriminator(cfg.model, (size, size), c, NUM_CLASSES)
    # A cosine schedule needs a planned length; its value does not change a step's cost.
    # LDAM / LMF margins need class counts: the demo's 3:1 patient ratio.
    disease_loss = build_classification_loss(cfg.loss.classification_loss, np.ones(spec["diseases"]),
                                             cfg.loss.classification_loss_args, class_counts=[30] + [10] * (spec["diseases"] - 1))
    gan = GANStep(cfg, G, D, np.ones(NUM_CLASSES), np.ones(spec["diseases"]), rt, total_steps=100 * cfg.train.epochs,
                  classification_loss=disease_loss)
    batch = {"image": tf.constant(rng.normal(size=(b, t, size, size, c)).astype(np.float32)),
             "label": tf.constant(rng.integers(0, NUM_CLASSES, size=(b, t, size, size)).astype(np.int32)),
             "disease": tf.constant(rng.integers(0, spec["diseases"], size=(b,)).astype(np.int32))}
    label = f"{name} {' '.join(overrides)}".strip()
    matmul = matmul_gflops()
    for stage in (ADVERSARIAL, SUPERVISED):
        gan.stage = stage
        m = _timed_steps(gan.step, _input_pipeline(tf, batch), warmup=2, repeats=5 if name != "full" else 3)
        gflop = step_gflop(gan, stage, batch)
        print(f"[{label}] training, {stage} step ({_allocator_label()}): {m['s_per_step']:.2f} s/step "
              f"({b * t / m['s_per_step']:.1f} slices/s); per step: user {m['user']:.2f} s, system {m['system']:.2f} s, "
              f"{m['faults']:,.0f} minor page faults; {gflop:.1f} GFLOP (TensorFlow's profiler), "
              f"{gflop / m['s_per_step']:.0f} GFLOP/s = {gflop / m['s_per_step'] / matmul:.2f}x this process's float32 "
              f"matmul rate ({matmul:.0f} GFLOP/s); batch {b} x T {t} at {size}x{size}, base {cfg.model.base_filters}, "
              f"{G.count_params() + D.count_params():,} parameters")
    if name == "demo":
        eager = _timed_steps(gan._adversarial_step, batch, warmup=1, repeats=3)
        print(f"[{name}] training eager (no tf.function): {eager['s_per_step']:.2f} s/step")
    print(f"[{name}] training peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def _input_pipeline(tf, batch):
    """Batches from a tf.data pipeline shaped like svgan's (a Python generator, a parallel map,
    prefetch), so that its threads run before the first step as they do in a training run:
    glibc's per-thread arenas only showed in that order (svgan/_memory.py)."""
    arrays = {k: v.numpy() for k, v in batch.items()}

    def windows():
        while True:
            yield arrays

    spec = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in arrays.items()}
    ds = tf.data.Dataset.from_generator(windows, output_signature=spec)
    ds = ds.map(lambda x: dict(x, image=x["image"] + 0.0), num_parallel_calls=tf.data.AUTOTUNE)
    it = iter(ds.prefetch(tf.data.AUTOTUNE))
    next(it)
    return it


def step_gflop(gan, stage: str, batch) -> float:
    """Floating-point operations of one compiled training step of ``stage``, as TensorFlow's profiler
    counts them on the step's graph (convolutions and matrix products; a recurrence's loop body once)."""
    from svgan._tf import import_tf

    tf = import_tf()
    spec = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in batch.items()}
    graph = gan._compiled[stage].get_concrete_function(spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops / 1e9


def multiply_adds_per_slice(model) -> int:
    """Multiply-adds of one slice through the model's convolutions and bidirectional recurrences."""
    import keras
    import numpy as np

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            total += int(np.prod(layer.output.shape[1:3])) * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Bidirectional):
            cell = layer.forward_layer.cell
            positions = int(np.prod(layer.output.shape[2:-1])) if len(layer.output.shape) > 3 else 1
            weights = int(np.prod(cell.kernel.shape)) + int(np.prod(cell.recurrent_kernel.shape))
            total += 2 * positions * weights
    return total


def conv_peak_gflops(repeats: int = 10) -> float:
    """GFLOP/s of one 3x3, 128 -> 128 channel convolution on 16 maps of 64 x 64 (a UNet's bulk)."""
    from svgan._tf import import_tf

    tf = import_tf()
    x, k = tf.random.normal((16, 64, 64, 128)), tf.random.normal((3, 3, 128, 128))

    @tf.function
    def conv(x, k):
        return tf.nn.conv2d(x, k, 1, "SAME")

    conv(x, k).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        conv(x, k).numpy()
    return 2 * 16 * 64 * 64 * 9 * 128 * 128 * repeats / (time.perf_counter() - start) / 1e9


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a float32 n x n matrix product (TensorFlow, this process's threads)."""
    from svgan._tf import import_tf

    tf = import_tf()
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        matmul(a, b).numpy()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def _inference(name, spec, G, t, b, rng, mode) -> None:
    """One whole volume through the saved generator in window ``mode``, after one volume to trace
    the compiled functions (as a prediction command's first patient does)."""
    import keras
    import numpy as np

    from svgan.evaluation.inference import make_predict_fn, predict_patient

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "generator.keras")
        G.save(path)
        predict = make_predict_fn(keras.models.load_model(path))
    size = spec["size"]
    volume = rng.normal(size=(spec["phases"], spec["slices"], size, size, spec["channels"])).astype(np.float32)
    predict_patient(predict, volume, t, b, mode=mode)
    start = time.perf_counter()
    predict_patient(predict, volume, t, b, mode=mode)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gflop = 2 * multiply_adds_per_slice(G) * spec["phases"] * spec["slices"] / 1e9
    matmul = matmul_gflops()
    print(f"[{name}] inference, {INFERENCE_MODES[mode]} ({_allocator_label()}): {seconds:.1f} s for {spec['phases']} x "
          f"{spec['slices']} slices at {size}x{size} through the saved model, peak RSS {peak_mb:.0f} MB; one pass is "
          f"{gflop:,.0f} GFLOP, so {gflop / seconds:.0f} GFLOP/s counted on one pass = {gflop / seconds / matmul:.2f}x this "
          f"process's float32 matmul rate ({matmul:.0f} GFLOP/s; 3x3 convolution {conv_peak_gflops():.0f} GFLOP/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CONFIGS))
    parser.add_argument("--part", choices=["train", "infer"])
    parser.add_argument("--compare", action="store_true", help="also measure with per-thread arenas and with the allocator defaults undone")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change the configuration, e.g. loss.classification_loss=ldam (repeatable)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--windows", default="central", help=argparse.SUPPRESS)  # the child's inference mode
    args = parser.parse_args()
    if args.child:
        run(args.only, args.part, args.set, args.windows)
        return
    settings = [{}, PER_THREAD_ARENAS, UNDO_ALLOCATOR] if args.compare else [{}]
    for name in [args.only] if args.only else CONFIGS:
        for part in [args.part] if args.part else ["train", "infer"]:
            for extra in settings:
                env = {**os.environ, **extra}
                for key in [*UNDO_ALLOCATOR, *PER_THREAD_ARENAS]:
                    if key not in extra:
                        env.pop(key, None)
                # Inference: each window mode in its own process, for its own peak memory.
                for mode in INFERENCE_MODES if part == "infer" else ["central"]:
                    subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--only", name, "--part", part,
                                    "--windows", mode, *[x for o in args.set for x in ("--set", o)]], check=True, env=env)


if __name__ == "__main__":
    main()

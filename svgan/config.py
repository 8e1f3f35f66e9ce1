"""Typed configuration shared by every command, loadable from YAML.

Every default is the value a paper gives where it gives one (the paper is named
beside the field); where the papers are silent the choice is ours and says so.
A YAML file only needs the fields it changes; ``--set a.b=value`` overrides one
field from the command line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import yaml

from .data.datasets import get_dataset
from .data.io import atomic_path
from .errors import ConfigError


@dataclass
class DataConfig:
    """Which dataset, where it lives, and which channels the model sees."""

    dataset: Literal["brats", "acdc"] = "brats"
    # "auto" detects the file naming from the first patient folder.
    format: Literal["auto", "brats", "brats2023", "brats2015", "acdc"] = "auto"
    prepared_dir: Optional[str] = None
    # Canonical names (flair, t1, t1ce, t2; BraTS 2023's t2f/t1n/t1c/t2w map onto them).
    # None means all of the dataset's modalities.
    modalities: Optional[list[str]] = None

    def resolved_modalities(self) -> tuple[str, ...]:
        if self.modalities:
            return tuple(self.modalities)
        return get_dataset(self.dataset).modalities


@dataclass
class PrepareConfig:
    """Preprocessing of Rezaei et al., section 3 ("Data Preparation and Augmentation")."""

    # Rezaei et al. applies bias-field correction; N4 (SimpleITK) on a shrunk image keeps it practical.
    n4_bias_correction: bool = True
    n4_shrink_factor: int = 4
    n4_iterations: list[int] = field(default_factory=lambda: [50, 50, 50, 50])
    # Rezaei et al.: z-score normalisation, computed inside the foreground mask.
    zscore: bool = True
    # Rezaei et al.: Nyul-Udupa standard scale; landmarks learned on the training split.
    nyul: bool = True
    nyul_percentiles: list[float] = field(
        default_factory=lambda: [1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0]
    )
    # Target spacing in mm per array axis (x, y, slice); null keeps the native spacing of that axis.
    # Our default keeps the slice axis native: the model is 2D per slice plus a recurrence across slices.
    target_spacing: list[Optional[float]] = field(default_factory=lambda: [None, None, None])
    # In-plane size after crop and pad (ours: BraTS 240 padded to 256).
    image_size: list[int] = field(default_factory=lambda: [256, 256])
    # foreground: crop to the bounding box of the foreground mask (skull-stripped BraTS);
    # center: keep the centre of the field of view (ACDC, where the heart sits mid-image).
    crop: Literal["foreground", "center", "none"] = "foreground"
    # Voxels whose intensity exceeds this in any modality are foreground (when no brain mask is given).
    foreground_threshold: float = 0.0
    # Patient-level split, stratified by disease class (ours; the papers do not give one).
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    split_seed: int = 0


@dataclass
class AugmentConfig:
    """Rezaei et al.: random crop, re-sizing/scaling, rotation in [-10, 10] degrees, Gaussian noise.

    Applied identically to every slice and modality of a sequence and to its mask,
    and only to training sequences.
    """

    enabled: bool = True
    rotation_degrees: float = 10.0  # Rezaei et al.
    scale_range: list[float] = field(default_factory=lambda: [0.9, 1.1])  # ours: Rezaei et al. gives none
    # Random crop: the view shifts by up to this fraction of the image side (ours).
    max_shift_fraction: float = 0.1
    noise_std: float = 0.05  # in z-score units (ours)
    # Intensity changes (ours; nnU-Net's habit): each training sequence's intensities multiplied by a
    # factor drawn from contrast_range (a contrast change about the patient's mean, 0 after z-scoring),
    # and raised to a power drawn from gamma_range after rescaling the sequence to [0, 1] (and back).
    # [1, 1]: off, Rezaei et al. use none.
    contrast_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    gamma_range: list[float] = field(default_factory=lambda: [1.0, 1.0])


@dataclass
class PipelineConfig:
    """The tf.data input pipeline: sequences of T consecutive slices of one patient."""

    sequence_length: int = 8  # ours: Rezaei et al. feeds "sequences" of a patient's slices; 8 fits the CPU
    batch_size: int = 2
    # In-plane size fed to the model; None = the prepared size. Progressive resizing (Cui et al.)
    # trains at a small size first, then larger ones, through this field.
    image_size: Optional[list[int]] = None
    # Training on crops (ours): each training sequence is a random window of this in-plane size
    # [h, w] of the prepared images, at their resolution (placed anywhere it fits, plus the usual
    # shift); validation, the head fit and prediction run the model on whole images. The model is
    # fully convolutional, so the same weights serve both (rebuilt at each size, as for progressive
    # resizing). None: train on whole images.
    crop_size: Optional[list[int]] = None
    # Where a training crop sits (ours): "anywhere" it fits, or centred on the "foreground" (the
    # labelled voxels of its sequence, the image centre where there are none), nnU-Net's habit of
    # sampling patches that hold the structures; the usual shift applies in both.
    crop_placement: Literal["anywhere", "foreground"] = "anywhere"
    # With crop_placement "foreground": the share of training windows centred on the foreground,
    # each drawn at random; the rest are placed anywhere (ours: nnU-Net places a third of its
    # patches on the foreground, so that the model also learns the periphery it predicts on).
    foreground_fraction: float = 1.0
    # Random windows drawn per patient per epoch; None = enough to cover its slices once.
    windows_per_patient: Optional[int] = None
    patients_in_flight: int = 4  # patients interleaved at once (memory vs shuffle quality)
    # Which training patients an epoch reads (ours). "natural": each once, shuffled.
    # "sqrt" / "balanced": as many draws, with replacement, a disease class drawn with probability
    # proportional to the square root of its patient count / equally (BraTS HGG:LGG 3:1 becomes
    # about 1.7:1 / 1:1); patients of unknown class form a class of their own.
    class_sampling: Literal["natural", "sqrt", "balanced"] = "natural"
    shuffle_buffer: int = 64
    one_hot: bool = False


@dataclass
class ModelConfig:
    """Generator and discriminator of Rezaei et al. ("Network Architecture", Fig. 1)."""

    # Rezaei et al.: 4 max-pooling layers; one convolution per level gives its "ten convolutional
    # layers" (5 encoder + 4 decoder + the 1x1 classifier) and the discriminator's five.
    depth: int = 4
    convs_per_level: int = 1
    base_filters: int = 32  # ours: the paper gives no width
    kernel_size: int = 3
    # Per-slice group normalisation (ours): statistics per example, so that results do not
    # depend on how a batch is split across replicas; "none" switches it off.
    norm: Literal["group", "none"] = "group"
    # Rezaei et al.: a bidirectional LSTM across the slices in the bottleneck. "convlstm" runs a
    # ConvLSTM2D over the bottleneck maps (the authors' choice); "lstm" an LSTM over pooled vectors.
    recurrent: Literal["convlstm", "lstm"] = "convlstm"
    recurrent_units: int = 64
    # Rezaei et al.: "a couple of dense layers" map the pooled features to the disease class.
    classifier_units: list[int] = field(default_factory=lambda: [64])
    # What the disease head reads. "slices" (Rezaei et al.): per-slice class logits from pooled
    # features, averaged over the slices (Eq. 4's aggregate). "volumes" (ours): the size of
    # each predicted structure per phase (mean and largest slice fraction, ED and ES for
    # ACDC), the quantities that define the ACDC groups; see PhaseStructureSizes.
    classifier: Literal["slices", "volumes"] = "slices"
    # The volume head's last layer: "dense" logits, or "cosine" (svgan.losses.CosineClassifier:
    # cosines in [-1, 1], what LDAM's scale s = 30 assumes; Cao et al. 2019). "auto": cosine
    # with loss.classification_loss ldam or lmf, dense otherwise.
    classifier_layer: Literal["auto", "dense", "cosine"] = "auto"
    # Per-slice class logits are bounded to +-this (ours): caps a slice's confidence; it does
    # not stop Eq. 4's L1 from settling on the majority class (see BoundLogits).
    classifier_logit_bound: float = 6.0
    dropout: float = 0.0
    # Cui et al.'s selective attention: an additive attention gate (Eq. 1) on every skip connection
    # of the generator, gated by the coarser decoder level (off in Rezaei et al.).
    attention_gates: bool = False
    discriminator_filters: int = 32
    # Rezaei et al.: pixel-level PatchGAN (N = 1); N > 1 judges N x N patches.
    patch_size: int = 1


@dataclass
class LossConfig:
    """Rezaei et al., Eq. 5: L = L_adv + L_H(w) + L_cls, one weight per term."""

    adversarial_weight: float = 1.0
    segmentation_weight: float = 1.0
    classification_weight: float = 1.0
    # Rezaei et al., Eq. 2 selective class weights; false gives the unweighted ablation (Table 1 row 2).
    selective_weights: bool = True
    # Rezaei et al. classifies from all slices of a patient; a window of T slices with no labelled
    # structure (a tumour-free part of the brain) carries no evidence of the grade, so by default
    # such windows do not enter Eq. 4 (ours; false classifies every window).
    classify_labelled_windows_only: bool = True
    # Rezaei et al., Eq. 4 is a weighted L1 on the slice-aggregated probabilities; "crossentropy" uses
    # -w_y log p_y on the same probabilities instead (ours, for comparison: the L1 has no gradient
    # left once the softmax saturates).
    # "focal": Lin et al.'s focal loss on the same probabilities (Zunair and Ben Hamza: alpha 0.25, gamma 2 for
    # two classes; classification_loss_args changes them).
    # "ldam" (Cao et al. 2019) and "lmf" (Sadi et al., Eq. 5: LDAM + focal) take their margins from the
    # training patients per class; they need the volume head (model.classifier: volumes), whose
    # logits are per patient, and get a cosine classifier there (model.classifier_layer).
    classification_loss: Literal["l1", "crossentropy", "focal", "ldam", "lmf"] = "l1"
    classification_loss_args: dict[str, Any] = field(default_factory=dict)
    # Deferred re-weighting (LDAM-DRW, Cao et al. 2019): from this epoch on (1-based) the LDAM or
    # LMF term weighs each class by its effective-number weight (beta 0.9999). Cao et al. switch at
    # epoch 160 of 200; null: no re-weighting.
    drw_start_epoch: Optional[int] = None
    # The segmentation term of Eq. 5. Rezaei et al.: Eq. 3's selective-weighted cross-entropy
    # (weights from Eq. 2; selective_weights above). The toolkit's losses (Cui et al.,
    # svgan/losses/segmentation.py) replace it by name; svgan/losses/registry.py maps the names.
    segmentation_loss: Literal["weighted_crossentropy", "dice", "tversky", "focal_tversky", "focal", "combo",
                               "unified_focal"] = "weighted_crossentropy"
    # Keyword arguments of the chosen loss beyond its paper defaults, e.g. {gamma: 0.3} or
    # {asymmetric: false, rare_classes: [1, 3]}.
    segmentation_loss_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 120  # Rezaei et al.
    learning_rate: float = 1e-4  # Rezaei et al., RMSprop for both networks
    # Rezaei et al.: a constant rate. "cosine" decays both rates to 0 over train.epochs (ours: a run
    # with a fixed budget of steps ends on small steps instead of mid-oscillation).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    discriminator_learning_rate: Optional[float] = None  # None: the same as the generator's
    d_steps: int = 1  # discriminator updates per generator update
    # Training stages (svgan/training/stages.py). Rezaei et al. train the GAN from the first step:
    # 0. N > 0: the first N epochs train the generator on its supervised terms alone (segmentation
    # and disease; the discriminator neither runs nor updates), then the adversarial stage of Eq. 5
    # follows, as segmentation GANs commonly pretrain their generator (ours).
    supervised_epochs: int = 0
    # Generator updates over which the adversarial weight rises linearly from 0 to
    # loss.adversarial_weight once the adversarial stage begins; 0: at once (Rezaei et al.).
    adversarial_ramp_steps: int = 0
    clipnorm: Optional[float] = None
    steps_per_epoch: Optional[int] = None  # None: one pass over the training windows
    # Progressive resizing (Cui et al.; svgan/training/progressive.py): in-plane sizes [h, w]
    # trained before the model's own size, with the epochs of each; e.g. [[48, 48], [64, 64]]
    # and [2, 2], then the remaining epochs at the full size. Empty: the full size throughout.
    progressive_sizes: list[list[int]] = field(default_factory=list)
    progressive_epochs: list[int] = field(default_factory=list)
    early_stopping_patience: Optional[int] = 20  # epochs without a better validation Dice
    # The generator the run keeps as generator.keras (ours): "best_validation", the epoch of the best
    # validation Dice; "last", the final epoch's, which is what a run without a validation split keeps
    # and what a schedule that decays the learning rate to its end was planned for.
    keep_model: Literal["best_validation", "last"] = "best_validation"
    # Wall-clock budget of the whole run: no epoch starts that would end past it, judged by the
    # last epoch (ours). None: bounded by epochs alone.
    max_minutes: Optional[float] = None
    # "auto": mixed float16 where a GPU is visible, float32 on CPU (where float16 and XLA are
    # slower). "bfloat16": mixed bfloat16 on a GPU or a CPU with bfloat16 instructions
    # (AVX512-BF16, AMX), float32 on other CPUs (svgan/training/runtime.py). Ours: the paper
    # trained in float32 on a GPU.
    mixed_precision: Literal["auto", "on", "off", "bfloat16"] = "auto"
    jit_compile: Literal["auto", "on", "off"] = "auto"
    # auto: MirroredStrategy over several GPUs, MultiWorkerMirroredStrategy when TF_CONFIG is set.
    distribute: Literal["auto", "none", "mirrored", "multi_worker"] = "auto"
    deterministic: bool = True  # tf.config.experimental.enable_op_determinism (not with XLA)
    # model.classifier=volumes: full-batch Adam iterations of the disease head on every training
    # patient after each epoch (ours; svgan/training/head_fit.py). 0: the GAN step alone trains it.
    head_fit_iterations: int = 300
    # When that fit runs (ours): "every" epoch; "stage_ends", after the last epoch of each stage
    # (the supervised one and the run's last); or "last", after the run's last epoch only, which is
    # all a run that keeps its last epoch's generator needs: the head reads the segmentation with
    # its gradient stopped, so the fit never changes what the generator learns, and it predicts
    # every training patient each time.
    head_fit_epochs: Literal["every", "stage_ends", "last"] = "every"
    # Wall-clock budget of the whole run in minutes, epoch ends included (ours; svgan/training/budget.py):
    # the trainer times steps of each stage and the epoch-end work first, then scales
    # steps_per_epoch and adversarial_ramp_steps by one factor so that the run fits, and lays out the
    # stages and the learning-rate schedule over those steps; before each later epoch it re-plans the
    # remaining epochs from the step times measured so far. The plan is kept in RUN/budget_plan.json;
    # a resumed run follows it. null: bounded by steps (the way to reproduce a run on another machine).
    budget_minutes: Optional[float] = None
    run_dir: str = "runs"
    image_summaries: bool = True


@dataclass
class PostprocessConfig:
    """What prediction (svgan predict, evaluate, validation) does to the label map (ours)."""

    # Keep only the largest connected component of each structure (3D, per phase): for anatomy
    # that is one piece, such as the ACDC heart; never for multifocal tumours.
    largest_component: bool = False
    # tau of post-hoc logit adjustment for the patient's class (svgan.evaluation.diagnosis):
    # 0 = the class of highest probability; 1 = divide by the class shares of the training
    # draws first, which aims at balanced accuracy on imbalanced cohorts (Menon et al. 2021).
    disease_prior_correction: float = 0.0
    # Where the patient's diagnosis comes from (svgan evaluate's headline figure and svgan predict's
    # answer). "head": the model's own disease head (Rezaei et al.). "clinical_features" (ACDC):
    # a random forest fitted on the ground-truth clinical features of the training patients
    # (volumes, ejection fractions, mass, wall thickness, indexed by body surface area) applied to
    # the features of the predicted segmentation, as the challenge's best entries diagnosed
    # (svgan/evaluation/clinical.py). svgan evaluate reports both either way.
    diagnosis: Literal["head", "clinical_features"] = "head"
    # Test-time augmentation (svgan/evaluation/test_time.py) for svgan predict and evaluate: views of
    # the patient as [degrees, scale] pairs (a rotation about the image centre, then a zoom; > 1 zooms
    # in) whose probabilities, turned back, are averaged with the unchanged patient's. [] (Rezaei et
    # al.): the patient once. Validation during training never uses them.
    test_time_views: list[list[float]] = field(default_factory=list)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    seed: int = 0

    def validate(self, source: str | None = None) -> "Config":
        _validate(self, source)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write the YAML file whole or not at all: a run folder's config.yaml is rewritten in place
        (a budget's plan, a resume's overrides), and a crash must not leave half of it."""
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)


def _validate(cfg: Config, source: str | None) -> None:
    def check(ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(what, source)

    p, a, q = cfg.prepare, cfg.augment, cfg.pipeline
    dataset = get_dataset(cfg.data.dataset)
    for m in cfg.data.resolved_modalities():
        check(m in dataset.modalities, f"data.modalities: unknown modality {m!r} for {dataset.name} "
                                       f"(known: {sorted(dataset.modalities)})")
    check(p.n4_shrink_factor >= 1, "prepare.n4_shrink_factor must be >= 1")
    check(len(p.target_spacing) == 3, "prepare.target_spacing needs 3 entries (x, y, slice)")
    check(all(s is None or s > 0 for s in p.target_spacing), "prepare.target_spacing entries must be > 0 or null")
    check(len(p.image_size) == 2 and min(p.image_size) >= 16, "prepare.image_size needs 2 entries >= 16")
    check(len(p.split_fractions) == 3 and min(p.split_fractions) >= 0 and abs(sum(p.split_fractions) - 1) < 1e-6,
          "prepare.split_fractions needs 3 non-negative fractions (train, validation, test) summing to 1")
    check(p.split_fractions[0] > 0, "prepare.split_fractions: the training fraction must be > 0")
    pct = p.nyul_percentiles
    check(len(pct) >= 3 and all(0 <= x <= 100 for x in pct) and list(pct) == sorted(set(pct)),
          "prepare.nyul_percentiles must be >= 3 increasing values in [0, 100]")
    check(0 <= a.rotation_degrees <= 180, "augment.rotation_degrees must be in [0, 180]")
    for name in ("scale_range", "contrast_range", "gamma_range"):
        r = getattr(a, name)
        check(len(r) == 2 and 0 < r[0] <= r[1], f"augment.{name} must be [lo, hi] with 0 < lo <= hi")
    check(0 <= a.max_shift_fraction < 0.5, "augment.max_shift_fraction must be in [0, 0.5)")
    check(a.noise_std >= 0, "augment.noise_std must be >= 0")
    check(q.sequence_length >= 1, "pipeline.sequence_length must be >= 1")
    check(q.sequence_length % dataset.phases == 0,
          f"pipeline.sequence_length must be a multiple of {dataset.name}'s {dataset.phases} phases "
          "(the same slice positions of each phase, one block after the other)")
    check(q.batch_size >= 1, "pipeline.batch_size must be >= 1")
    check(q.image_size is None or (len(q.image_size) == 2 and min(q.image_size) >= 8),
          "pipeline.image_size must be null or 2 entries >= 8")
    check(q.windows_per_patient is None or q.windows_per_patient >= 1, "pipeline.windows_per_patient must be >= 1 or null")
    check(q.crop_size is None or (len(q.crop_size) == 2 and all(s >= 16 and s % (2 ** cfg.model.depth) == 0 for s in q.crop_size)
                                  and all(c <= s for c, s in zip(q.crop_size, q.image_size or p.image_size))),
          f"pipeline.crop_size must be null or [h, w], each >= 16, divisible by 2^model.depth = {2 ** cfg.model.depth} "
          "and no larger than the image")
    check(q.crop_size is None or not (q.image_size or cfg.train.progressive_sizes),
          "pipeline.crop_size does not combine with pipeline.image_size or train.progressive_sizes")
    check(0 <= q.foreground_fraction <= 1, "pipeline.foreground_fraction must be in [0, 1]")
    check(q.patients_in_flight >= 1 and q.shuffle_buffer >= 1, "pipeline.patients_in_flight and shuffle_buffer must be >= 1")
    m, t, lo = cfg.model, cfg.train, cfg.loss
    check(1 <= m.depth <= 6 and m.convs_per_level >= 1, "model.depth must be in [1, 6] and model.convs_per_level >= 1")
    check(m.base_filters >= 1 and m.recurrent_units >= 1 and m.discriminator_filters >= 1, "model filter counts must be >= 1")
    check(m.kernel_size % 2 == 1, "model.kernel_size must be odd")
    check(0 <= m.dropout < 1, "model.dropout must be in [0, 1)")
    check(m.classifier_logit_bound > 0, "model.classifier_logit_bound must be > 0")
    check(m.patch_size >= 1 and (m.patch_size & (m.patch_size - 1)) == 0, "model.patch_size must be a power of 2 (1 = pixel level)")
    size = q.image_size or p.image_size
    check(all(s % (2 ** m.depth) == 0 for s in size),
          f"image size {list(size)} must be divisible by 2^model.depth = {2 ** m.depth}")
    check(all(w >= 0 for w in (lo.adversarial_weight, lo.segmentation_weight, lo.classification_weight)),
          "loss weights must be >= 0")
    margin_loss = lo.classification_loss in ("ldam", "lmf")
    check(not margin_loss or m.classifier == "volumes",
          f"loss.classification_loss {lo.classification_loss!r} needs model.classifier: volumes (patient logits "
          "from a cosine classifier; the slice head's output is an average of slice probabilities)")
    check(m.classifier_layer != "cosine" or m.classifier == "volumes", "model.classifier_layer: cosine needs model.classifier: volumes")
    check(lo.drw_start_epoch is None or (margin_loss and lo.drw_start_epoch >= 1),
          "loss.drw_start_epoch needs loss.classification_loss ldam or lmf and must be >= 1")
    check(t.epochs >= 1 and t.learning_rate > 0 and t.d_steps >= 0, "train.epochs >= 1, learning_rate > 0, d_steps >= 0")
    check(t.clipnorm is None or t.clipnorm > 0, "train.clipnorm must be > 0 or null")
    check(0 <= t.supervised_epochs <= t.epochs, "train.supervised_epochs must be in [0, train.epochs]")
    check(t.adversarial_ramp_steps >= 0, "train.adversarial_ramp_steps must be >= 0")
    check(t.steps_per_epoch is None or t.steps_per_epoch >= 1, "train.steps_per_epoch must be >= 1 or null")
    check(t.head_fit_iterations >= 0, "train.head_fit_iterations must be >= 0")
    check(t.max_minutes is None or t.max_minutes > 0, "train.max_minutes must be > 0 or null")
    check(t.budget_minutes is None or (math.isfinite(t.budget_minutes) and t.budget_minutes > 0),
          "train.budget_minutes must be > 0 or null")
    check(t.budget_minutes is None or not t.progressive_sizes, "train.budget_minutes does not combine with train.progressive_sizes")
    check(t.head_fit_epochs == "every" or (t.keep_model == "last" and t.max_minutes is None and t.early_stopping_patience is None),
          f"train.head_fit_epochs: {t.head_fit_epochs} needs train.keep_model: last, no train.max_minutes and no early stopping "
          "(the kept generator must be one whose head was fitted)")
    sizes, stage_epochs = t.progressive_sizes, t.progressive_epochs
    check(len(sizes) == len(stage_epochs), "train.progressive_sizes and train.progressive_epochs need one entry per stage")
    check(all(isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(v, int) and v >= 16 and v % (2 ** m.depth) == 0
                                                                   for v in s) for s in sizes),
          f"train.progressive_sizes: each stage needs [h, w], integers >= 16 divisible by 2^model.depth = {2 ** m.depth}")
    check(all(isinstance(e, int) and e >= 1 for e in stage_epochs), "train.progressive_epochs: each stage needs >= 1 epoch")
    check(cfg.postprocess.diagnosis == "head" or dataset.cardiac,
          f"postprocess.diagnosis: clinical_features needs a cardiac dataset such as acdc, not {dataset.name}")
    check(all(len(v) == 2 and abs(v[0]) <= 180 and v[1] > 0 for v in cfg.postprocess.test_time_views),
          "postprocess.test_time_views: each view needs [degrees, scale] with degrees in [-180, 180] and scale > 0")
    tau = cfg.postprocess.disease_prior_correction
    check(math.isfinite(tau) and tau >= 0, "postprocess.disease_prior_correction must be a finite number >= 0")


# ---------------------------------------------------------------- loading

# Annotations whose values are taken as they are, once their type is right (bool is an int in Python).
_PLAIN = {bool: (lambda v: isinstance(v, bool), "true or false"),
          int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
          str: (lambda v: isinstance(v, str), "a string")}


def _coerce(value: Any, tp: Any, where: str, source: str | None) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert what is safe (int -> float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [t for t in args if t is not type(None)]
        return _coerce(value, inner[0], where, source)
    if origin is Literal:
        if isinstance(value, bool) and "on" in args and "off" in args:
            value = "on" if value else "off"  # YAML 1.1 (PyYAML, --set) reads a bare on / off as true / false
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}", source)
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}", source)
        return [_coerce(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp) or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}", source)
        return _from_dict(tp, value, where, source) if dataclasses.is_dataclass(tp) else dict(value)
    if tp in _PLAIN:
        accepts, expected = _PLAIN[tp]
        if not accepts(value):
            raise ConfigError(f"{where}: expected {expected}, got {value!r}", source)
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads 1e-3 (no dot) as a string; accept what Python reads as a number.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}", source)
        return float(value)
    raise TypeError(f"unsupported config annotation {tp!r} at {where}")


def _from_dict(cls: type, values: dict, where: str, source: str | None):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown field {prefix}{unknown[0]} (known: {', '.join(sorted(names))})", source)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k, source) for k, v in values.items()}
    return cls(**kwargs)


# Settings that were removed, with the value that did nothing: a run folder saved before keeps loading
# while it holds that value; any other value is an error saying why the setting went.
REMOVED = {("postprocess", "foreground_window"): (False, "the two-pass window prediction was removed in December 2026: "
                                                         "it was never measured to help (it is in git history at a139d52)")}


def _drop_removed(values: dict, source: str | None) -> dict:
    values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (values or {}).items()}
    for (section, name), (inert, why) in REMOVED.items():
        if isinstance(values.get(section), dict) and name in values[section]:
            if values[section].pop(name) != inert:
                raise ConfigError(f"{section}.{name}: {why}", source)
    return values


def config_from_dict(values: dict, source: str | None = None) -> Config:
    return _from_dict(Config, _drop_removed(values, source), "", source).validate(source)


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. pipeline.batch_size=4")
        key, raw = item.split("=", 1)
        node = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return values


def _read_yaml(path: str | os.PathLike | None) -> tuple[dict, str | None]:
    """(the file's sections, its path) or ({}, None) without a file."""
    if path is None:
        return {}, None
    source = os.fspath(path)
    try:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError("config file not found", source) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML ({str(e).splitlines()[0]})", source) from None
    if not isinstance(values, dict):
        raise ConfigError("the top level must be a mapping of sections", source)
    return values, source


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML file (or the defaults when ``path`` is None) and apply ``--set`` overrides."""
    values, source = _read_yaml(path)
    return config_from_dict(apply_overrides(values, overrides or []), source)


# ---------------------------------------------------------------- 2D image classification (Zunair and Ben Hamza)

@dataclass
class ImageDataConfig:
    """A folder of images per class, ``root/<class>/*.png|jpg`` (ISIC-style)."""

    root: Optional[str] = None
    # Label order: class index i is classes[i]. None: the sorted folder names. The last class is
    # the positive one for sensitivity, focal alpha and ROC (Zunair and Ben Hamza: melanoma).
    classes: Optional[list[str]] = None
    # Zunair and Ben Hamza pad ISIC images to squares and resizes them to 256 x 256.
    image_size: list[int] = field(default_factory=lambda: [256, 256])
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])  # ours (ISIC-2016 ships its own test set)
    split_seed: int = 0
    # Classic offline augmentation (Zunair and Ben Hamza's Augment-5x / -10x baselines): the training split
    # becomes this many times its size with randomly flipped, rotated, shifted, zoomed and
    # brightened copies. 1: none.
    augment_factor: int = 1
    # Folders written by `svgan synthesize`, added to the training split only.
    synthetic_dirs: list[str] = field(default_factory=list)
    # Synthetic images added until the minority class reaches this share of the majority's count
    # (Zunair and Ben Hamza balance the classes: 1.0). None: every synthetic image.
    oversample_to_ratio: Optional[float] = 1.0


@dataclass
class CycleGANConfig:
    """CycleGAN (Zhu et al. 2017) as Zunair and Ben Hamza train it: Adam 2e-4, beta1 0.5, batch 1, lambda 10."""

    # U-Net generators; CycleGAN and Zunair and Ben Hamza use 64 filters at the first level (ours: 32 for CPUs).
    filters: int = 32
    depth: int = 4
    discriminator_filters: int = 64  # 70 x 70 PatchGAN of CycleGAN: 64-128-256-512
    # "lsgan": least squares (CycleGAN, and the authors' code); "bce": Zunair and Ben Hamza, Eq. 2's log-likelihood.
    adversarial: Literal["lsgan", "bce"] = "lsgan"
    cycle_weight: float = 10.0  # Zunair and Ben Hamza: lambda = 10
    # Identity loss weight relative to cycle_weight (CycleGAN: 0.5); 0 switches it off.
    identity_weight: float = 0.5
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    batch_size: int = 1
    epochs: int = 500  # Zunair and Ben Hamza
    steps_per_epoch: Optional[int] = None  # None: every image of the smaller class once (Zunair and Ben Hamza's undersampling)
    samples_per_grid: int = 4


@dataclass
class ClassifierConfig:
    """VGG-GAP (Zunair and Ben Hamza): VGG-16's convolutional blocks, global average pooling, one softmax layer."""

    # Filters of VGG-16 (64 ... 512) times this (ours; 1.0 is VGG-16, and the only width that
    # loads ImageNet weights from `weights`).
    width: float = 1.0
    weights: Optional[str] = None  # a local VGG-16 "notop" weights file; nothing is downloaded
    loss: Literal["focal", "lmf", "crossentropy"] = "focal"
    loss_args: dict[str, Any] = field(default_factory=dict)  # focal: alpha 0.25, gamma 2 (Zunair and Ben Hamza)
    learning_rate: float = 1e-3  # Adadelta (Zunair and Ben Hamza)
    batch_size: int = 16  # Zunair and Ben Hamza
    epochs: int = 100  # an upper bound: training stops when the validation loss stops improving
    # Batches per epoch; None: one pass over the training set. Set, it gives every variant of a
    # comparison the same optimizer steps however much augmentation grew its training set (ours).
    steps_per_epoch: Optional[int] = None
    reduce_lr_factor: float = 0.1  # Zunair and Ben Hamza
    reduce_lr_patience: int = 5  # ours
    early_stopping_patience: int = 10  # ours: Zunair and Ben Hamza keep the best weights once the loss stagnates


@dataclass
class ImagesConfig:
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    cyclegan: CycleGANConfig = field(default_factory=CycleGANConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    seed: int = 0
    run_dir: str = "runs"

    def validate(self, source: str | None = None) -> "ImagesConfig":
        def check(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(what, source)

        d, g, c = self.data, self.cyclegan, self.classifier
        check(len(d.image_size) == 2 and min(d.image_size) >= 16 and all(s % 2 ** g.depth == 0 for s in d.image_size),
              f"data.image_size needs 2 entries >= 16 divisible by 2^cyclegan.depth = {2 ** g.depth}")
        check(len(d.split_fractions) == 3 and min(d.split_fractions) >= 0 and abs(sum(d.split_fractions) - 1) < 1e-6
              and d.split_fractions[0] > 0, "data.split_fractions needs 3 non-negative fractions summing to 1, training > 0")
        check(d.augment_factor >= 1, "data.augment_factor must be >= 1")
        check(d.oversample_to_ratio is None or d.oversample_to_ratio > 0, "data.oversample_to_ratio must be > 0 or null")
        check(d.classes is None or len(set(d.classes)) == len(d.classes) >= 2, "data.classes needs at least 2 distinct names")
        check(g.filters >= 1 and g.discriminator_filters >= 1 and 1 <= g.depth <= 6, "cyclegan filters >= 1, depth in [1, 6]")
        check(g.cycle_weight >= 0 and g.identity_weight >= 0, "cyclegan loss weights must be >= 0")
        check(g.learning_rate > 0 and 0 <= g.beta_1 < 1 and g.batch_size >= 1 and g.epochs >= 1,
              "cyclegan: learning_rate > 0, beta_1 in [0, 1), batch_size >= 1, epochs >= 1")
        check(g.steps_per_epoch is None or g.steps_per_epoch >= 1, "cyclegan.steps_per_epoch must be >= 1 or null")
        check(0 < c.width <= 1, "classifier.width must be in (0, 1]")
        check(c.weights is None or c.width == 1, "classifier.weights (VGG-16's) need classifier.width = 1")
        check(c.learning_rate > 0 and c.batch_size >= 1 and c.epochs >= 1, "classifier: learning_rate > 0, batch_size and epochs >= 1")
        check(c.steps_per_epoch is None or c.steps_per_epoch >= 1, "classifier.steps_per_epoch must be >= 1 or null")
        check(0 < c.reduce_lr_factor < 1, "classifier.reduce_lr_factor must be in (0, 1)")
        return self


def load_images_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> ImagesConfig:
    """``load_config`` for the 2D image-classification path (``svgan synthesize``, ``classify``, ``oversampling``)."""
    values, source = _read_yaml(path)
    return _from_dict(ImagesConfig, apply_overrides(values, overrides or []), "", source).validate(source)

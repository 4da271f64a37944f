"""`edgereg train DATA_DIR --task T --out runs/NAME`: fine-tune a MobileNet on a dataset.

TensorFlow is imported only inside the command body, so ``edgereg train --help`` is fast
(``train.backbones``, which names the backbones, imports keras only inside its functions).
"""

from __future__ import annotations

import click

from train import tasks as train_tasks
from train.backbones import BACKBONES
from train.devices import CPU_DEVICES_ENV, PRECISIONS, parse_devices
from train.inputs import CACHE_MODES, MEMORY_CACHE_MAX_BYTES
from train.limits import INPUT_SIDE, LIMITS

from ._tasks import given_task_options, task_choice, task_help, task_options


def _input_size(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    if value is None:
        return None
    text = value.lower().replace("×", "x")
    try:
        sides = [int(v) for v in text.split("x")] if "x" in text else [int(text)]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give a size like 160 or HxW like 128x160") from None
    if len(sides) > 2 or not all(INPUT_SIDE.holds(v) for v in sides):
        raise click.BadParameter(
            f"{value!r}: each side must be in the range {INPUT_SIDE.text()} pixels "
            "(e.g. 160 or 128x160)"
        )
    return sides if len(sides) == 2 else sides[0]


def _devices(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from edge_runtime.errors import TrainingError

    try:
        return parse_devices(value)
    except TrainingError as e:
        raise click.BadParameter(str(e)) from None


@click.command(name="train", context_settings={"max_content_width": 100})
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--task",
    type=task_choice(),
    help=task_help("What the model answers (not needed with --resume):"),
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=str),
    help="Run directory to write (e.g. runs/NAME): a new or empty folder, or an edgereg "
    "run (--resume, --overwrite). Never inside DATA_DIR.",
)
@click.option(
    "--val",
    "val_dir",
    type=click.Path(file_okay=False, path_type=str),
    help="A separate validation dataset (default: a deterministic 20 % split of DATA_DIR).",
)
@click.option(
    "--val-fraction",
    type=LIMITS["val_fraction"].click_type(),
    default=0.2,
    show_default=True,
    help="Share held out for val.",
)
@click.option(
    "--backbone",
    type=click.Choice(BACKBONES),
    default="mobilenet_v2",
    show_default=True,
    help="Feature extractor. *_minimalistic variants are Edge TPU friendly.",
)
@click.option(
    "--alpha",
    type=LIMITS["alpha"].click_type(),
    default=1.0,
    show_default=True,
    help="Width multiplier (mobilenet_v2: 0.35-1.4). Pretrained weights here: 1.0 only.",
)
@click.option(
    "--input-size",
    callback=_input_size,
    help="Model input, e.g. 160 or 128x160 (HxW). Default: the task's ("
    + ", ".join(f"{t.name} {t.default_input_size}" for t in train_tasks.tasks())
    + ").",
)
@click.option(
    "--weights",
    default="imagenet",
    show_default=True,
    help="imagenet (pretrained), none (from scratch), or PATH to a .pth/.weights.h5 file.",
)
@click.option(
    "--epochs",
    type=LIMITS["epochs"].click_type(),
    help="Total epochs (default: the task's number of steps, e.g. "
    + ", ".join(
        f"{t.name} ~{t.default_steps} in 15-{t.max_default_epochs} epochs"
        for t in train_tasks.tasks()
    )
    + ").",
)
@click.option(
    "--warmup-epochs",
    type=LIMITS["warmup_epochs"].click_type(),
    help="Head-only epochs (default: 15 % of them).",
)
@click.option(
    "--batch-size",
    type=LIMITS["batch_size"].click_type(),
    help="Per device (global = batch x devices). Default: 16 (<500 images) or 32.",
)
@click.option(
    "--lr",
    type=LIMITS["lr"].click_type(),
    default=1e-3,
    show_default=True,
    help="Head learning rate; fine-tuning uses 0.3 x lr.",
)
@click.option(
    "--fine-tune-blocks",
    type=LIMITS["fine_tune_blocks"].click_type(),
    help="Backbone blocks (from the top) trained in phase 2 (default: all; BatchNorm stays frozen).",
)
@click.option(
    "--fine-tune-lr",
    type=LIMITS["fine_tune_lr"].click_type(),
    help="Learning rate of phase 2 (default: 0.3 x --lr).",
)
@click.option(
    "--weight-decay",
    type=LIMITS["weight_decay"].click_type(),
    default=1e-4,
    show_default=True,
    help="AdamW weight decay.",
)
@click.option(
    "--dropout",
    type=LIMITS["dropout"].click_type(),
    default=0.2,
    show_default=True,
    help="Dropout before the head's dense layer (0 turns it off).",
)
@click.option(
    "--patience",
    type=LIMITS["patience"].click_type(),
    help="Early stopping: epochs without a better validation metric (default: max(10, epochs/4)).",
)
@click.option(
    "--invariant",
    "invariances",
    help="Transforms that do not change the target, e.g. rot90,flip or rotate "
    "(hflip, vflip, flip, rot90, rotate). Used for augmentation.",
)
@click.option(
    "--folds",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="k-fold cross-validation: K fold runs report the metric's mean ± spread, then the "
    "final model trains on all images for the folds' median kept epoch (0: off). Worth it "
    "below ~300 images, where one validation image moves the figure by a whole step.",
)
@click.option(
    "--ema-epochs",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="Validate and keep the moving average of the weights over about this many epochs "
    "(0: the raw weights).",
)
@click.option(
    "--clipnorm",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Clip each step's gradients to this global norm (0: off).",
)
@task_options(labels_only=False)
@click.option("--no-augment", is_flag=True, help="Turn augmentation off (to compare).")
@click.option(
    "--max-minutes",
    type=LIMITS["max_minutes"].click_type(),
    help="Stop after this much training time (best kept).",
)
@click.option(
    "--max-steps",
    type=LIMITS["max_steps"].click_type(),
    help="Stop after this many optimizer steps (best kept; a quick check or a benchmark).",
)
@click.option(
    "--seed",
    type=LIMITS["seed"].click_type(),
    default=0,
    show_default=True,
    help="Seed for split, init, augment.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the interrupted run in --out from its last checkpoint (its saved "
    "settings). A run that stopped before its first epoch ended starts again.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the edgereg run already in --out (its model, plots, checkpoints and "
    "exports; other files are kept). Never replaces a folder that is not a run.",
)
@click.option(
    "--sanity",
    is_flag=True,
    help="Only check that the model can overfit 8 training images; fails loudly if not.",
)
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Drop rows that fail the dataset checks (and say how many) instead of refusing.",
)
@click.option(
    "--devices",
    callback=_devices,
    default="auto",
    show_default=True,
    help="auto (every visible GPU; the CPU without one), cpu, or N (the first N GPUs). "
    "Two or more train under tf.distribute.MirroredStrategy; with TF_CONFIG set, every "
    "worker joins a MultiWorkerMirroredStrategy. --batch-size is per device; the learning "
    f"rate grows with sqrt(devices) (docs/scaling.md). {CPU_DEVICES_ENV}=N splits the CPU "
    "to check the path without a GPU.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="mixed: float16 compute with float32 weights (fast on GPUs); auto: mixed on GPUs, "
    "float32 elsewhere. The saved model is float32 either way.",
)
@click.option(
    "--cache",
    type=click.Choice(CACHE_MODES),
    default="auto",
    show_default=True,
    help="Where decoded, resized images are kept between epochs: memory, disk (a temporary "
    "file in TMPDIR, removed at exit), or none (decode every time). auto: memory up to "
    f"{MEMORY_CACHE_MAX_BYTES / 2**30:g} GiB of images, else disk when there is room.",
)
def cli(data_dir: str, task: str | None, out: str, **kw: object) -> None:
    """Fine-tune a MobileNet regressor/classifier on DATA_DIR and write the run to --out.

    \b
    The run directory holds model.keras, spec.json, config.json, metrics.json,
    history.csv, plots/ and summary.txt. Metrics are in your units, beside the trivial
    baseline. Bad data is refused with the full check report (see `edgereg data check`).

    \b
    Examples:
      edgereg train data/midpoint --task point --y-up --out runs/midpoint
      edgereg train data/reagent --task value --range 80 350 --invariant rot90,flip --out runs/c
      edgereg train data/cards --task keypoints --flip-pairs 0:1,2:3 --out runs/cards
      edgereg train data/gauges --task angle --gauge 225 135 0 10 --units bar --out runs/g
      edgereg train data/cards --task keypoints --out runs/cards --resume
      edgereg train data/parts --task class --folds 5 --out runs/parts
    """
    from train.training import train

    given = given_task_options(kw, labels_only=False)
    resume = bool(kw.pop("resume"))
    overwrite = bool(kw.pop("overwrite"))
    if resume:  # a resumed run uses its saved settings; pass on only what the user typed
        ctx = click.get_current_context()
        source = click.core.ParameterSource.DEFAULT
        kw = {k: v for k, v in kw.items() if ctx.get_parameter_source(k) != source or k == "sanity"}
    sanity = bool(kw.pop("sanity"))
    from edge_runtime.log import verbosity

    quiet = verbosity() < 0  # -q (every command's): no progress, warnings only
    if "no_augment" in kw:
        kw["augment"] = not kw.pop("no_augment")
    if task is None and not resume:
        raise click.UsageError("--task is required (except with --resume)")
    path = train(
        data_dir,
        task or "",
        out,
        resume=resume,
        overwrite=overwrite,
        sanity=sanity,
        verbose=not quiet,
        **kw,
        **given,
    )
    from train.devices import is_chief_task, tf_config

    if not is_chief_task(tf_config()):
        click.echo(f"worker done; the chief of the TF_CONFIG cluster wrote the run: {path}")
        return
    click.echo(f"{'sanity check passed' if sanity else 'run written'}: {path}")

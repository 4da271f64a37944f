"""``edgereg eval MODEL DATA_DIR``: metrics in the user's units beside the trivial baseline.

TensorFlow, ``train`` and matplotlib are imported inside the command, never at module
level, so ``edgereg eval --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge_runtime.interpreter import BACKENDS

from ._json import STDOUT, emit_json, human, json_option
from ._tasks import given_task_options, task_choice, task_options


@click.command(name="eval")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option(
    "--task",
    type=task_choice(),
    default=None,
    help="Expected task (default: the model's own; a mismatch is an error).",
)
@task_options(labels_only=True, tristate=True)
@click.option("--tta", is_flag=True, help="Average over the model's declared invariances.")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="Interpreter for .tflite models.",
)
@click.option("--skip-bad", is_flag=True, help="Skip bad rows/images instead of stopping.")
@json_option("the flat metric keys (mean_error_px, pck@0.05, rmse, accuracy, baseline_*...)")
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write pred_vs_true.png, error_hist.png and examples.png into this folder "
    "(new, empty, or eval's own earlier plots; never inside an input).",
)
def cli(
    model: Path,
    data_dir: Path,
    task: str | None,
    tta: bool,
    backend: str,
    skip_bad: bool,
    json_out: str | None,
    plots_dir: Path | None,
    **options: object,
) -> None:
    """Evaluate MODEL (a run directory, .keras or .tflite file) on DATA_DIR.

    Prints each metric beside the trivial baseline (training mean / majority class) and
    warns loudly when the model is not clearly better than it. Label options left out
    (--y-up, --coords, --target ...) take the run's own settings.
    """
    from train.evaluate import evaluate_model
    from train.metrics import format_table, verdict

    _check_outputs(model, data_dir, json_out, plots_dir)
    ev = evaluate_model(
        model,
        data_dir,
        task=task,
        tta=tta,
        backend=backend,
        skip_bad=skip_bad,
        **given_task_options(options, labels_only=True),
    )
    m = ev.metrics
    echo = human(json_out)
    echo(f"model: {m['model']} ({m['model_kind']}{', TTA' if tta else ''})")
    echo(f"data:  {m['data_dir']}  ({m['n']} images, {ev.spec.task} task)")
    if m.get("skipped_rows"):
        echo(f"skipped {m['skipped_rows']} bad row(s) (--skip-bad)", fg="yellow")
    echo(f"baseline: the trivial predictor fitted on the {m['baseline_source']}")
    echo("")
    echo(format_table(ev.spec, m))
    v = verdict(ev.spec, m)
    if v:
        echo("")
        echo(v, fg="red", bold=True)
    emit_json(json_out, m)
    if plots_dir is not None:
        from edge_runtime.ownership import mark
        from train.plots import plot_error_hist, plot_examples, plot_pred_vs_true, worst_examples

        plots_dir.mkdir(parents=True, exist_ok=True)
        mark(plots_dir, PLOTS_KIND)
        plot_pred_vs_true(ev.spec, ev.y_true, ev.y_pred, plots_dir / "pred_vs_true.png")
        plot_error_hist(ev.spec, ev.y_true, ev.y_pred, plots_dir / "error_hist.png", ev.image_sizes)
        from edge_runtime.images import read_image

        idx = worst_examples(ev.spec, ev.y_true, ev.y_pred, 16)
        imgs = [read_image(ev.paths[i]) for i in idx]
        plot_examples(
            ev.spec, imgs, ev.y_true[idx], ev.y_pred[idx], plots_dir / "examples.png",
            of=len(ev.y_true),
        )  # fmt: skip
        echo(f"wrote plots to {plots_dir}")


#: The kind in an eval plots folder's ownership marker (edge_runtime/ownership.py).
PLOTS_KIND = "eval plots"


def _check_outputs(
    model: Path, data_dir: Path, json_out: str | None, plots_dir: Path | None
) -> None:
    """Before the (long) evaluation: --json and --plots may not be or lie in an input,
    and may only replace eval's own earlier output (edge_runtime/ownership.py)."""
    from edge_runtime.outputs import check_outputs
    from edge_runtime.ownership import claim_file, claim_folder, json_with_keys, only_names
    from train.evaluate import JSON_KEYS, PLOT_FILES, eval_inputs

    out_file = None if json_out in (None, STDOUT) else json_out
    files, folders = eval_inputs(model, data_dir)
    check_outputs(
        files,
        [("--json", out_file)],
        input_folders=folders,
        output_folders=[("--plots", plots_dir)],
    )
    if out_file is not None:
        claim_file("--json", out_file, json_with_keys(*JSON_KEYS), "edgereg eval --json")
    if plots_dir is not None:
        claim_folder(
            "--plots", plots_dir, PLOTS_KIND, legacy=only_names(PLOT_FILES), purpose="plots"
        )

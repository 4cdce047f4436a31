"""The `acol-eval` command line: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

import sys

import click

from acol_eval import __version__, api
from acol_eval.util.clickparts import (
    DerivedHelp,
    OneLineErrors,
    RegistryChoice,
    names_of,
    registry_names,
)
from acol_eval.util.runtime import DEVICE_HELP


def annotations_help() -> str:
    """--annotations' help, naming every registered annotation format."""
    formats = ", ".join(registry_names("acol_eval.data.readers", "READERS"))
    return f"Annotation source: FORMAT:PATH ({formats}) or a bare PATH whose format is detected."


def _floats(text: str | None) -> list[float] | None:
    """'0.6', '0.5,0.7', '[0.5, 0.7]' or '0.5 0.7' -> floats."""
    if text is None:
        return None
    try:
        return api.parse_numbers(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _training_methods() -> list[str]:
    from acol_eval.models.trainmethod import list_methods

    return list_methods()


def _presets() -> list[str]:
    from acol_eval.training.presets import Preset

    return [preset.value for preset in Preset]


def _presets_help() -> str:
    """--preset's help: what each preset stands for, from the preset table."""
    from acol_eval.training.presets import preset_lines

    return ("A named recipe: fills every option not given on the command line, printed at "
            "the start and written to OUT/preset.json; explicit flags override it. "
            + " ".join(preset_lines()))


@click.group(cls=OneLineErrors,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="acol-eval")
def main() -> None:
    """Weakly supervised object localisation with ACoL.

    \b
      acol-eval train      train or fine-tune an ACoL (or plain CAM) model
      acol-eval localize   sweep images into classes, fused CAMs and boxes
      acol-eval score      score maps against box / mask annotations
      acol-eval boxes      redo a run's boxes at another threshold from its map store
      acol-eval compare    compare score reports: leaderboard and paired statistics
      acol-eval synth      write the embedded default data set

    Run `acol-eval COMMAND --help` for each command's options.
    """


@main.command()
@click.option("--preset", type=RegistryChoice(_presets), default=None, cls=DerivedHelp,
              help_from=lambda: _presets_help())
@click.option("--method", type=RegistryChoice(_training_methods), default="acol",
              show_default=True,
              help="Training method; acol's options are --recipe, --delta, --head and "
                   "--loss-weights. has (Hide-and-Seek), cutmix and adl train that same "
                   "--recipe model with their own --has-*, --cutmix-*, --adl-* options: "
                   "--method has --recipe p is HaS over CAM, --recipe pp over ACoL; fsl "
                   "(few-shot baseline) trains a foreground head on --boxes-per-class K box "
                   "masks; ddt and ddt-class are training-free DDT maps with a linear "
                   "classifier probe. A method defined outside acol-eval trains through the "
                   "Python API (acol_eval.train), after importing its module.")
@click.option("--data", "--input-path", "data", required=True,
              help="Training source: an ImageFolder root (train/ and val/ or validation/), "
                   "or FORMAT:PATH such as cub:PATH or folder:PATH.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: last.pt, best.pt, metrics.csv. A folder that already holds "
                   "a run is refused unless --resume is given.")
@click.option("--images", default=None, type=click.Path(file_okay=False),
              help="Image root for sources that hold only metadata (wsol:PATH).")
@click.option("--arch", "--model", "arch", default="resnet50", show_default=True,
              help="torchvision backbone (resnet18/34/50/101/152, resnext50_32x4d, "
                   "wide_resnet50_2, vgg16, vgg16_bn, mobilenet_v2, densenet121, "
                   "efficientnet_b0).")
@click.option("--recipe", "--cls-recipe", "recipe", default="pp", show_default=True,
              help="acol: classifier chain over {p, n}: p = complementary (cross-entropy), "
                   "n = adversarial (rest cross-entropy); the first must be p.")
@click.option("--delta", "--delta-list", "delta", default="0.6", show_default=True,
              help="Erasing threshold(s) on the normalised map, in (0, 1]: one for every "
                   "step, or one per step ('0.5,0.7').")
@click.option("--head", type=click.Choice(["linear", "conv"]), default="linear",
              show_default=True, help="linear = 1x1 conv (seed); conv = 3x3-3x3-1x1 (official).")
@click.option("--feature-stride", type=int, default=32, show_default=True,
              help="CAM stride: 32, 16 or 8 (dilation replaces the late strides).")
@click.option("--weights", default="imagenet", show_default=True,
              help="Backbone initialisation: none, imagenet, or a torchvision state-dict file.")
@click.option("--epochs", type=int, default=10, show_default=True, help="1 to 10000.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="1 to 1024.")
@click.option("--lr", type=float, default=0.001, show_default=True,
              help="Backbone learning rate (above 0); heads get --head-lr-mult times it.")
@click.option("--head-lr-mult", default="10", show_default=True,
              help="Heads' learning rate over the backbone's: one value for every head, or "
                   "one per recipe letter ('10,5' for pn).")
@click.option("--momentum", type=float, default=0.9, show_default=True, help="0 to 0.999.")
@click.option("--weight-decay", type=float, default=1e-4, show_default=True, help="0 or more.")
@click.option("--schedule", type=click.Choice(["cosine", "step", "constant"]),
              default="cosine", show_default=True, help="Learning-rate schedule per epoch.")
@click.option("--lr-steps", default=None, help="Epochs where 'step' multiplies the rate by "
              "--lr-gamma, e.g. '20,40'.")
@click.option("--lr-gamma", type=float, default=0.1, show_default=True, help="In (0, 1].")
@click.option("--loss-weights", default=None,
              help="One weight (0 or more) per recipe letter for the summed loss "
                   "(default all 1).")
@click.option("--input-size", type=int, default=224, show_default=True,
              help="Crop size for training, resize size for validation (32 to 2048).")
@click.option("--resize-size", type=int, default=None,
              help="Square resize before the random crop, at least --input-size "
                   "[default: input-size * 256/224].")
@click.option("--val-fraction", type=float, default=0.0, show_default=True,
              help="Hold out this share of the train split (stratified by class, seeded by "
                   "--seed) as the validation split for best.pt, instead of the source's "
                   "val/test split, which stays untouched. 0 to 0.9; 0: off.")
@click.option("--val-split", default=None,
              help="Validate on this split of the source [default: val, validation, else "
                   "test, whichever exists].")
@click.option("--cache", type=click.Choice(["auto", "memory", "disk", "off"]), default="auto",
              show_default=True,
              help="Decode each image once and keep it resized for later epochs: in memory, "
                   "or in OUT/cache (reused by --resume and reruns); auto = memory when it "
                   "fits a quarter of the free memory, else disk.")
@click.option("--workers", type=int, default=None,
              help="Data-loading worker processes; 0 loads in the main process "
                   "[default: cores - 1, at most 8]. The trained model does not depend "
                   "on it.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Every random draw (initial weights, order, crops, flips) derives from "
                   "it, the epoch and the image's index.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--amp/--no-amp", default=True, show_default=True,
              help="Automatic mixed precision on CUDA (ignored on CPU).")
@click.option("--channels-last/--no-channels-last", default=True, show_default=True,
              help="channels_last memory format (CUDA and CPU: 1.2-1.6x a CPU "
                   "training step).")
@click.option("--boxes-per-class", default=None, metavar="K|all",
              help="Methods that train on boxes (fsl): K box-labelled images per class "
                   "(or all), drawn from the validation split (stratified, seeded by "
                   "--seed; never the test split) and left out of model choice and "
                   "calibration; the budget and the image lists go to OUT/boxes.json.")
@click.option("--has-grid", type=int, default=None,
              help="--method has: side in pixels of the square cells hidden [default: 4].")
@click.option("--has-drop-rate", type=float, default=None,
              help="--method has: probability of hiding each cell, 0 to 1 [default: 0.5].")
@click.option("--cutmix-beta", type=float, default=None,
              help="--method cutmix: the box's area share is Beta(beta, beta) [default: 1].")
@click.option("--cutmix-prob", type=float, default=None,
              help="--method cutmix: probability of mixing a batch, 0 to 1 [default: 1].")
@click.option("--adl-drop-rate", type=float, default=None,
              help="--method adl: probability of the drop mask (else the importance map), "
                   "per layer and batch, 0 to 1 [default: 0.75].")
@click.option("--adl-gamma", type=float, default=None,
              help="--method adl: drop where attention < gamma x its maximum [default: 0.9].")
@click.option("--adl-stages", default=None,
              help="--method adl: torchvision module names after which ADL runs, comma-"
                   "separated [default: per backbone, e.g. layer3.0,layer4.0,layer4 for "
                   "ResNets, features.7,features.14,features.18 for mobilenet_v2].")
@click.option("--resume", is_flag=True,
              help="Continue from OUT/last.pt exactly where it stopped.")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="When the data has boxes: after training, store in best.pt the CAM "
                   "threshold with the best GT-known Loc on the validation images "
                   "(native protocol, OUT/calibration/); localize then boxes with it.")
@click.option("--recalibrate", is_flag=True,
              help="With --resume of a finished run: calibrate best.pt again (without it "
                   "the run's calibration is kept).")
@click.pass_context
def train(ctx: click.Context, preset: str | None, **options) -> None:
    """Train or fine-tune an ACoL model on image-level labels.

    Writes OUT/last.pt every epoch, OUT/best.pt (best validation accuracy) and
    OUT/metrics.csv. Runs unchanged under torchrun (DistributedDataParallel).
    """
    from acol_eval.util.flags import option_flag

    for name in ("delta", "lr_steps", "loss_weights", "head_lr_mult"):
        try:
            options[name] = _floats(options[name])
        except click.BadParameter as exc:
            raise click.BadParameter(exc.message, param_hint=option_flag(name)) \
                from None
    options["lr_steps"] = options["lr_steps"] or ()
    explicit = {name for name in options
                if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    result = api.train(preset=preset, explicit=explicit, **options)
    if result.epochs and result.main_process:
        calibrated = (f"; CAM threshold {result.calibration.threshold:g}, calibrated"
                      if result.calibration else "")
        click.echo(f"trained {result.epochs} epoch(s) -> {result.out} (best.pt: "
                   f"{result.best_accuracy:.1f}% accuracy{calibrated})")


@main.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--classes", type=int, default=4, show_default=True, help="2 to 6.")
@click.option("--train-per-class", type=int, default=60, show_default=True)
@click.option("--val-per-class", type=int, default=25, show_default=True)
@click.option("--size", type=int, default=160, show_default=True,
              help="Image side in pixels (32 to 1024).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True,
              help="Write into OUT even when it holds files (they may be replaced); "
                   "without it a non-empty OUT is refused.")
def synth(out: str, **options) -> None:
    """Write the embedded default data set to OUT (deterministic from --seed)."""
    from acol_eval.util.progress import counted

    counts = api.synth(out, **options)
    click.echo(
        f"wrote {counts['train']} train and {counted(counts['val'], 'val image')} to {out} "
        f"(ImageFolder: {out}/images, csv: {out}/annotations.csv, cub: {out})"
    )


@main.command()
@click.argument("images")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: predictions.csv, the map store, run.json, errors.csv.")
@click.option("--checkpoint", default=None, help="An acol-eval checkpoint (from train).")
@click.option("--arch", default=None,
              help="Or a plain torchvision classifier as a CAM model, e.g. resnet50.")
@click.option("--weights", default="imagenet", show_default=True,
              help="With --arch: imagenet, none, or a torchvision state-dict file.")
@click.option("--feature-stride", type=int, default=32, show_default=True,
              help="With --arch: 32, 16 or 8 (dilated late stages, same weights).")
@click.option("--labels", default=None,
              help="Annotation source giving the labels of a folder's images (FORMAT:PATH).")
@click.option("--split", default=None, help="Split of an annotation source (train, val, test).")
@click.option("--image-root", default=None, type=click.Path(file_okay=False),
              help="Where an annotation source's images are, when not beside it (wsol:PATH).")
@click.option("--top-k", type=int, default=5, show_default=True,
              help="Predicted classes (and their maps) per image.")
@click.option("--cam-threshold", type=float, default=None,
              help="Box threshold as a fraction of the upsampled map's range [default: "
                   "the checkpoint's calibrated threshold, else 0.2].")
@click.option("--threshold-from", type=click.Path(), default=None,
              help="A report scored with --protocol native (folder or summary.csv): box at "
                   "its best_gt_known_loc threshold.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--workers", type=int, default=None,
              help="Decoding worker processes [default: cores - 1, at most 8].")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--overlays", default=None, type=click.Path(file_okay=False),
              help="Folder for JPEG heatmap overlays with the box drawn.")
@click.option("--all-boxes", is_flag=True,
              help="Write every connected component's box to boxes.csv, not only the largest.")
@click.option("--method", type=RegistryChoice(names_of("acol_eval.models.mapmethods", "MapMethod")),
              default="model", show_default=True,
              help="Which maps: model = the model's own fused CAMs; or a post-hoc method "
                   "(pytorch-grad-cam) on the first classifier's logits. scorecam is "
                   "very slow on CPU (one forward pass per feature channel).")
@click.option("--target-layer", default=None,
              help="Post-hoc methods: the module whose activations are mapped, e.g. "
                   "backbone.7 [default: the backbone's output, at --feature-stride].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="With --weights none: the seed of the random model, so runs repeat.")
def localize(**options) -> None:
    """Sweep IMAGES through the fused-CAM generator into classes, maps and boxes.

    IMAGES is a folder (searched recursively), a text file listing image paths,
    or an annotation source such as cub:PATH (labels known, so the label's map
    is stored too). Rerunning the same command after a kill continues the run.
    """
    from acol_eval.util.progress import counted

    summary = api.localize(**options).result  # a LocalizeResult
    if summary.images or summary.failed:
        # a resumed run counts every image but timed only this call: no rate to give
        pace = (f"finished a resumed run in {summary.seconds:.0f} s" if summary.resumed else
                f"{summary.images / max(summary.seconds, 1e-9):.1f} img/s")
        click.echo(
            f"localised {counted(summary.images, 'image')} ({pace}), "
            f"{counted(summary.maps, 'map')} -> {summary.out}"
            + (f"; {summary.failed} could not be read or decoded (see "
               f"{summary.out}/errors.csv)" if summary.failed else "")
        )
    if summary.failed:
        sys.exit(1)


@main.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="New run folder (must not exist or be empty): predictions.csv, run.json, "
                   "boxes.csv with --all-boxes, links to RUN's map store.")
@click.option("--cam-threshold", type=float, default=None,
              help="Box threshold as a fraction of the upsampled map's range.")
@click.option("--threshold-from", type=click.Path(), default=None,
              help="A report scored with --protocol native (folder or summary.csv): use its "
                   "best_gt_known_loc threshold.")
@click.option("--all-boxes", is_flag=True,
              help="Write every connected component's box to boxes.csv, not only the largest.")
@click.option("--overlays", default=None, type=click.Path(file_okay=False),
              help="New folder for JPEG heatmap overlays with the box drawn.")
@click.option("--images", default=None, type=click.Path(file_okay=False),
              help="Where RUN's images are, for --overlays [default: from RUN's run.json].")
@click.option("--workers", type=int, default=None,
              help="Worker processes; 0 works in this one [default: cores - 1, at most 8].")
def boxes(run: str, **options) -> None:
    """Redo RUN's boxes at another CAM threshold from its map store alone (no model).

    NEW_RUN gets predictions.csv as localize would write it at that threshold and
    shares RUN's map store through links, so `acol-eval score NEW_RUN` works.
    """
    result = api.boxes(run, **options).result  # a BoxesResult
    click.echo(f"boxed {result.images} images at CAM threshold {result.threshold.value:g} "
               f"({result.threshold.source.value}) in {result.seconds:.2f} s -> {result.out}"
               + (f"; {result.without_box} without a box" if result.without_box else "")
               + (f"; {result.overlays} overlays" if result.overlays else ""))
    if result.overlay_failed:
        click.echo(f"acol-eval: {result.overlay_failed} overlays could not be drawn", err=True)
        sys.exit(1)


@main.command()
@click.argument("run", type=click.Path())
@click.option("--annotations", required=True, cls=DerivedHelp, help_from=annotations_help)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Report folder: summary.csv, per_class.csv, per_image.csv, curve.csv, "
                   "curve.png, report.json, outcomes.npz, report.html (a folder holding a "
                   "report is refused unless --overwrite).")
@click.option("--split", default=None, help="Score only this split of the annotations.")
@click.option("--protocol",
              type=RegistryChoice(names_of("acol_eval.scoring.protocols", "Protocol")),
              default="wsoleval",
              show_default=True, help="wsoleval = clovaai/wsolevaluation's 224x224 box "
                                      "evaluator; native = original pixels.")
@click.option("--iou", default="30,50,70", show_default=True,
              help="IoU thresholds (percent) of MaxBoxAccV2.")
@click.option("--cam-curve-interval", type=float, default=0.001, show_default=True,
              help="Step of the CAM threshold grid arange(0, 1, step), at least 0.0001.")
@click.option("--threshold", type=float, default=None,
              help="Fixed CAM threshold in [0, 1] of gt_known_loc/top1_loc/top5_loc "
                   "[default: the threshold a localize run boxed with when it was not the "
                   "default (calibrated by train, --cam-threshold, --threshold-from), "
                   "else 0.2; threshold_source says which].")
@click.option("--threshold-from", type=click.Path(), default=None,
              help="Another report of the same protocol (folder or summary.csv): use its "
                   "thresholds, not the best.")
@click.option("--bootstrap", type=int, default=0, show_default=True,
              help="Bootstrap rounds for 95% intervals over images: 0 (none) or 1000 to "
                   "100000.")
@click.option("--workers", type=int, default=None,
              help="Worker processes (0: all work in the main process) [default: all cores].")
@click.option("--baseline", type=RegistryChoice(names_of("acol_eval.scoring.scoring", "Baseline")),
              default=None,
              help="Score a centred Gaussian map (sigma 0.25 of each side, at RUN's map "
                   "resolution) for every image of RUN instead of RUN's maps; "
                   "classification still comes from RUN's predictions. Rows say "
                   "'PROTOCOL (baseline: centre)'.")
@click.option("--label-rule",
              type=RegistryChoice(names_of("acol_eval.data.readers", "COCO_LABEL_RULES")),
              default=None,
              help="coco: an image's label is the category with the largest total box "
                   "area (default) or with the most boxes.")
@click.option("--mask-root", type=click.Path(file_okay=False), default=None,
              help="Folder where the annotations' mask paths resolve (wsol/OpenImages "
                   "localization.txt mask,ignore columns) [default: the annotation folder].")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              help="Folder where the annotations' relative image paths resolve (absolute "
                   "paths are used as they are) [default: beside the annotations].")
@click.option("--map", "map_choice",
              type=RegistryChoice(names_of("acol_eval.scoring.scoring", "MapChoice")),
              default="auto", show_default=True,
              help="Which map of a localize run is scored: the label's, the top-1 "
                   "predicted class's, or the label's where the label is a model class "
                   "and the top-1 map elsewhere (counted, and named in per_image.csv). "
                   "Where a top-1 map is scored, the largest-box figures are class-agnostic "
                   "and named agnostic_loc / best_agnostic_loc (no top5_loc).")
@click.option("--allow-missing", is_flag=True,
              help="Score the annotated images that have a map when some have none (or "
                   "maps have no annotation); the report then says 'N of M annotated "
                   "images'. Without it such a score is refused.")
@click.option("--image-list", type=click.Path(dir_okay=False), default=None,
              help="A text file naming the images meant to be scored, one a line, as the "
                   "annotations name them: the annotated set becomes those images "
                   "(the report still says 'N of M' of the whole split).")
@click.option("--predictions", type=click.Path(dir_okay=False), default=None,
              help="For a folder of .npy maps: a CSV image,pred_1,...,pred_k (as localize "
                   "writes predictions.csv; classes written as the annotations' labels), "
                   "so cls_top1/top5 and Top-1/Top-5 Loc are reported.")
@click.option("--strict", is_flag=True,
              help="Refuse a score over part of the annotated split: the default now, "
                   "kept for scripts.")
@click.option("--overwrite", is_flag=True,
              help="Replace the report already in --out (without it, such an --out is "
                   "refused and left as it was).")
@click.option("--region-metrics", default="", cls=DerivedHelp, help_from=lambda: (
    "Also score the explanation literature's localisation metrics against each image's "
    "mask (else the union of its boxes): all, or names among "
    + ", ".join(registry_names("acol_eval.metrics.regionmetrics", "REGION_METRICS"))
    + " [default: none]."))
@click.option("--pointing-tolerance", type=float, default=0.0, show_default=True,
              help="pointing_game: the map's maximum hits within this many pixels (of the "
                   "protocol's frame) of the region (Quantus: 0; Zhang et al.: 15).")
@click.option("--top-k", type=int, default=1000, show_default=True,
              help="top_k_intersection's k: the map's k highest pixels (Quantus: 1000).")
def score(run: str, **options) -> None:
    """Score maps against box and mask annotations into CSV reports.

    RUN is a localize run folder or a folder of .npy score maps named by image id
    (with or without the image's extension).
    """
    from acol_eval.metrics.reports import terminal_table

    options["iou"] = _floats(options["iou"]) or ()
    result = api.score(run, **options).result  # a ScoreResult
    if options["baseline"]:
        click.echo(f"baseline: {options['baseline']} (a centred Gaussian map for every "
                   f"image, not RUN's maps)")
    if result.issues.get("scored_with_top1_map"):
        click.echo(f"map: the top-1 predicted class's map for "
                   f"{result.issues['scored_with_top1_map']} images whose label is not a "
                   f"model class (--map auto)")
    meta = result.meta
    if meta is not None and meta.partial:
        why = {"allow-missing": " (--allow-missing)",
               "image-list": f" (--image-list {options['image_list']})"}.get(meta.subset or "",
                                                                               "")
        click.echo(f"coverage: {meta.coverage}{why}")
    click.echo(terminal_table(result.summary))
    fixed = result.summary[result.summary["threshold_source"].astype(str).str.startswith("run:")]
    if len(fixed) and options["protocol"] != "native":
        click.echo(f"fixed rows at RUN's own CAM threshold {fixed['threshold'].iloc[0]:.3f} "
                   f"({fixed['threshold_source'].iloc[0]}); its boxes were made under the "
                   f"native protocol, which scores them exactly (--protocol native)")
    if result.failed:
        click.echo(f"acol-eval: {result.failed} map{'s' if result.failed > 1 else ''} "
                   f"could not be read", err=True)
    if result.exit_code:
        sys.exit(result.exit_code)


@main.command()
@click.argument("reports", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for leaderboard.csv, pairs.csv and report.html.")
@click.option("--reference", default=None,
              help="The report (or seed group) the others are compared against "
                   "[default: the first].")
@click.option("--bootstrap", type=int, default=1000, show_default=True,
              help="Paired bootstrap rounds for 95% intervals: 0 (none) or 1000 to 100000.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the bootstrap resampling.")
@click.option("--overwrite", is_flag=True,
              help="Replace leaderboard.csv, pairs.csv and report.html already in --out.")
def compare(reports: tuple[str, ...], **options) -> None:
    """Compare score REPORTS of the same images: leaderboard and paired statistics.

    Each REPORT is a score report folder, or several seeds' reports of one method
    joined by commas (a1,a2,a3: mean and standard deviation over the seeds). Needs
    the reports only, neither maps nor images. Reports must cover the same images
    ("N of M annotated images"): reports of different coverage are refused.

    Writes OUT/leaderboard.csv, OUT/pairs.csv and OUT/report.html, a page that leads
    with methods against headline metrics (intervals, differences to the reference,
    McNemar) and explains every column.
    """
    from acol_eval.comparison.compare import result_text

    result = api.compare(*reports, **options)
    click.echo(result_text(result))
    click.echo(f"wrote {result.out}/leaderboard.csv, pairs.csv and report.html "
               f"({result.seconds:.1f} s)")


if __name__ == "__main__":
    main()

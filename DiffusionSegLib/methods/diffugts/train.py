"""`python -m DiffusionSegLib train diffugts`: train the optional heads on labelled tumour volumes.

Follows the shared training conventions (DiffusionSegLib.training): image/mask folders or
image/label volumes preprocessed exactly as inference does, a sorted seeded split by case,
`--max-minutes`, JSON-lines progress, and a checkpoint folder of config.json + safetensors +
model card. The frozen base model is never modified; the folder holds the heads only and names
the base model they were trained on. `--resume` skips the adapter stage when the folder already
holds a trained adapter that passed its check, and trains on from it when it fell short (the
expensive part of a run is the frozen-backbone caching, which is recomputed; there is no
optimizer state worth keeping for heads this small). Validation checks the adapter's coarse
Dice and the heads' refined Dice against the trivial answers (training/quality.py).

`--max-minutes` bounds the whole run (model and data loading included). Stages and their shares
of what is left when each starts: the adapter (backbone cache + epochs) 40 % (80 % without a
residual head), the residual head (pipeline cache + epochs) 75 %, validation the rest. A cache
cut short by its stage's budget keeps the slices done so far (drawn in a seeded random order, so
they are a random subset), and validation evaluates the slices that fit. The adapter is saved as
soon as its stage ends, so a run cancelled or stopped later resumes from it with `--resume`.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ...contract.errors import InvalidRequest
from ...contract.events import JobContext
from ...training.arguments import add_data_arguments, add_run_arguments
from ...training.budget import RunBudget

if TYPE_CHECKING:  # pragma: no cover
    import torch


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    data = add_data_arguments(parser, output_help="heads folder to write")
    data.add_argument("--val-max-slices", type=int, default=64,
                      help="validate on at most this many evenly spaced slices (each runs the full pipeline)")
    method = parser.add_argument_group("frozen model and prompts")
    method.add_argument("--model", default=None, help="base text-to-image diffusers model (frozen)")
    method.add_argument("--prompt", required=True, help="anomaly prompt, e.g. 'brain tumour'")
    method.add_argument("--organ", default="", help="normal prompt becomes 'healthy <organ>'")
    method.add_argument("--normal-prompt", default="", help="explicit normal prompt")
    method.add_argument("--strength", type=float, default=0.6,
                        help="inpainting noise strength, as the 'strength' parameter at inference")
    method.add_argument("--inpaint-steps", type=int, default=20, help="inpainting schedule steps ('steps' at inference)")
    method.add_argument("--dilation", type=int, default=3, help="coarse-mask dilation before inpainting, in pixels")
    method.add_argument("--aova-timesteps", default="100",
                        help="comma-separated timesteps whose cross-attention is averaged ('aova_timesteps')")
    method.add_argument("--adapter-features", choices=("vae", "unet"), default="vae",
                        help="what the AOVA adapter reads: frozen VAE-encoder features (default), or the frozen "
                             "diffusion UNet's decoder features (the paper's choice; fresh noise at every "
                             "training step, one seeded draw per slice at inference)")
    method.add_argument("--manifest", default=None,
                        help="JSON of prompt pairs with the label values each names (e.g. DiffusionSegLib/data/"
                             "manifests/brats_subregions.json): the adapter trains on all of them; --prompt is "
                             "the run's main pair (residual and image heads, validation); masks keep their labels")
    method.add_argument("--hold-out", default=None,
                        help="a manifest prompt left out of training; its Dice is reported (unseen prompt)")
    optim = add_run_arguments(parser, batch_size=8, lr=1e-3,
                              max_minutes_help="wall-time budget of the whole run: loading, adapter 40 %% of it, "
                                               "residual head 75 %% of the rest, validation the rest",
                              resume_help="reuse the adapter already in --output")
    optim.add_argument("--adapter-epochs", type=int, default=30, help="epochs of the AOVA adapter (or its budget)")
    optim.add_argument("--head-epochs", type=int, default=30, help="epochs of the residual head (or its budget)")
    optim.add_argument("--no-residual-head", action="store_true", help="train the AOVA adapter only")
    optim.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW weight decay of the heads")


def checked_setting(name: str, flag: str, value: object) -> object:
    """`value` checked against the range of DiffuGTS's inference parameter `name` (the heads must
    be trained with settings inference accepts); InvalidParameter naming the CLI flag otherwise."""
    from ...contract.errors import InvalidParameter
    from .spec import param

    try:
        return param(name).coerce(value)
    except InvalidParameter as error:
        raise InvalidParameter(f"{flag}: {error.message}", hint=error.hint) from None


def train(args: argparse.Namespace, context: JobContext) -> dict:
    import torch

    from ...models.stable_diffusion import load_stable_diffusion
    from ...training.checkpoint import write_model_card
    from ...training.data import load_slices, split_cases
    from ...training.loop import apply_threads, log_metrics
    from ...training.quality import report_check
    from .fit import (
        FitOptions,
        backbone_cache,
        heads_config,
        image_head_inputs,
        residual_cache,
        train_adapter,
        train_residual_head,
    )
    from .heads import load_heads, load_image_head, save_heads
    from .image_head import train_image_head
    from .prompts import resolve_prompts
    from .spec import INFO, parse_timesteps
    from .stages import DiffuGTSPipeline, DiffuGTSSettings
    from .validation import validation_metrics

    apply_threads(args.threads)
    prompts = resolve_prompts(args.prompt, args.organ, args.normal_prompt)
    manifest = held = None
    if args.manifest:
        from .manifest import class_values, read_manifest, split_pairs

        manifest = read_manifest(args.manifest)
        main_pair, training_pairs, held = split_pairs(manifest, prompts.anomaly, args.hold_out)
        prompts = main_pair.prompts
    elif args.hold_out:
        raise InvalidRequest("--hold-out needs --manifest (the prompt pairs to hold one out of).")
    if args.adapter_epochs < 1:
        raise InvalidRequest("--adapter-epochs must be at least 1.")
    if args.head_epochs < 0:
        raise InvalidRequest("--head-epochs must not be negative.")
    if args.batch_size < 1:
        raise InvalidRequest("--batch-size must be at least 1.")
    settings = DiffuGTSSettings(strength=checked_setting("strength", "--strength", args.strength),
                                steps=checked_setting("steps", "--inpaint-steps", args.inpaint_steps),
                                dilation=checked_setting("dilation", "--dilation", args.dilation),
                                aova_timesteps=parse_timesteps(args.aova_timesteps),
                                adapter_features=args.adapter_features)
    model = args.model or INFO.default_model
    context.seed = args.seed
    output = Path(args.output).expanduser()
    resumable = args.resume and (output / "config.json").is_file()
    extend = resumable and adapter_fell_short(output)  # train on from the saved adapter instead of reusing it
    budget = RunBudget(args.max_minutes, context, 1 + (not resumable or extend) + (not args.no_residual_head))
    with context.timed("load"):
        parts = load_stable_diffusion(model, args.device)
    with context.timed("load_data"):
        values = class_values(manifest) if manifest else None  # masks then hold classes 1..K
        data = load_slices(args.images, args.masks, parts.image_size, None if manifest else args.mask_map, values,
                           args.intensity, key=args.key)
    train_cases, val_cases = split_cases(data.cases, args.val_fraction, args.seed)
    train_set, val_set = data.subset(train_cases), data.subset(val_cases)
    context.log(f"{len(data)} slices from {len(set(data.cases))} cases: {len(train_cases)} training cases "
                f"({len(train_set)} slices), {len(val_cases)} validation cases ({len(val_set)} slices).")

    def pair_masks(masks: torch.Tensor, pair: object) -> torch.Tensor:
        return torch.isin(masks, torch.tensor([values.index(v) + 1 for v in pair.labels]))

    masks = pair_masks(train_set.masks, main_pair) if manifest else train_set.masks > 0
    pairs = None
    if manifest:
        from .stages import text_vectors

        pairs = [(text_vectors(parts, p.prompts), pair_masks(train_set.masks, p)) for p in training_pairs]
        context.log(f"Adapter prompt pairs: {', '.join(p.prompts.anomaly for p in training_pairs)}"
                    + (f"; held out: {held.prompts.anomaly}" if held else "") + ".")
    images = train_set.images
    if budget.limited:  # a cache cut short by the budget then holds a random subset, not the first cases
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
        images, masks = images[order], masks[order]
        pairs = [(text, pair[order]) for text, pair in pairs] if pairs else pairs
    valid = torch.ones_like(masks)
    options = FitOptions(adapter_epochs=args.adapter_epochs, head_epochs=args.head_epochs,
                         batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                         train_residual_head=not args.no_residual_head)
    pipeline = DiffuGTSPipeline(parts, prompts, settings, context)
    config = {**heads_config(pipeline, model), "mask_map": args.mask_map, "intensity": args.intensity,
              "split": {"train": train_cases, "validation": val_cases, "seed": args.seed}}
    if manifest:
        config["manifest"] = {"pairs": [{"prompt": p.prompts.anomaly, "normal_prompt": p.prompts.normal,
                                         "labels": list(p.labels)} for p in manifest],
                              "held_out": held.prompts.anomaly if held else None}

    def on_epoch(event: dict) -> None:
        context.progress(f"train_{event['stage']}", event["epoch"], event["epochs"], loss=round(event["loss"], 5))
        context.check_cancelled()

    adapter = image_head = initial = None
    if resumable:
        previous, adapter, _ = load_heads(output, parts.device)
        image_head = load_image_head(output, parts.device)
        if previous.get("model") != model or previous.get("prompt") != prompts.anomaly:
            raise InvalidRequest(f"--resume: {output} holds heads for model '{previous.get('model')}' and prompt "
                                 f"'{previous.get('prompt')}', not '{model}' / '{prompts.anomaly}'.")
        if extend:
            initial, adapter, image_head = copy.deepcopy(adapter), None, None
            context.log(f"Resumed: the adapter in {output} fell short, so it trains on from its weights.")
        else:
            context.log(f"Resumed: reusing the trained adapter in {output}.")
    trained_adapter = adapter is None
    if adapter is None:
        stage = budget.stage("adapter", "cache the frozen backbone and train the AOVA adapter",
                             0.8 if args.no_residual_head else 0.4)
        with context.timed("cache_backbone"):
            cache = backbone_cache(pipeline, images, valid, options.batch_size,
                                   lambda i, n: context.progress("cache_backbone", i, n), stop=stage.exhausted)
        n = len(cache["region"])
        with context.timed("train_adapter"):
            adapter = train_adapter(pipeline, cache, masks[:n], options, on_epoch, stage.exhausted,
                                    [(text, pair[:n]) for text, pair in pairs] if pairs else None, initial)
    # The heads train on the CPU-cached backbone outputs; inference feeds them device features.
    adapter = adapter.to(parts.device)
    pipeline.adapter = adapter
    if trained_adapter:
        with context.timed("train_image_head"):  # BCE on "this slice holds tumour"
            statistics = image_head_inputs(pipeline, cache, tuple(masks.shape[-2:]), options.batch_size)
            image_head = train_image_head(statistics, masks[:n].flatten(1).any(1), seed=args.seed,
                                          log=on_epoch).to(parts.device)
    pipeline.image_head = image_head
    save_heads(output, {**config, "stage": "adapter"}, adapter, None, "# DiffuGTS heads (adapter stage)\n",
               image_head)
    head = None
    if options.train_residual_head:
        stage = budget.stage("residual_head", "run the pipeline on the training slices and train the residual head",
                             0.75)
        with context.timed("cache_residuals"):
            residuals = residual_cache(pipeline, images, valid, options.batch_size,
                                       lambda i, n: context.progress("cache_residuals", i, n), stop=stage.exhausted)
        n = len(residuals["inputs"])
        with context.timed("train_residual_head"):
            head = train_residual_head(residuals, masks[:n], options, on_epoch, stage.exhausted).to(parts.device)
    pipeline.residual_head = head
    stage = budget.stage("validate", "validate the heads with the full pipeline")
    with context.timed("validate"):
        evaluated = val_set if len(val_set) else train_set
        keep = torch.linspace(0, len(evaluated) - 1, min(len(evaluated), max(1, args.val_max_slices))).long()
        truth = pair_masks(evaluated.masks, main_pair) if manifest else evaluated.masks > 0
        metrics = validation_metrics(pipeline, evaluated.images[keep], truth[keep], options.batch_size,
                                     stop=stage.exhausted)
        if held is not None:  # the unseen prompt: the same heads, the held-out pair's text
            unseen = DiffuGTSPipeline(parts, held.prompts, settings, context, adapter, head, image_head)
            scores = validation_metrics(unseen, evaluated.images[keep], pair_masks(evaluated.masks, held)[keep],
                                        options.batch_size, stop=stage.exhausted)
            metrics.update({f"unseen_{k}": v for k, v in scores.items() if k != "slices"},
                           unseen_prompt=held.prompts.anomaly)
    metrics["evaluated_on"] = "validation cases" if len(val_set) else "training cases (no validation split)"
    log_metrics(context, f"DiffuGTS heads: refined Dice {metrics['refined_dice']:.4f}",
                **{k: v for k, v in metrics.items() if isinstance(v, float)})
    checks = heads_checks(metrics, truth[keep][:int(metrics["slices"])], budget.elapsed_minutes)
    for result in checks:
        report_check(context, result)
    save_heads(output, {**config, "stage": "complete", "validation": metrics,
                        "checks": [c.to_dict() for c in checks]}, adapter, head, "", image_head)
    write_model_card(
        output, "DiffuGTS heads",
        f"AOVA adapter{' and residual head' if head is not None else ''} for the frozen base model "
        f"`{model}`, prompts '{prompts.anomaly}' / '{prompts.normal}'. Use with "
        f"`--param heads={output}` and the same base model.",
        data={"images": args.images, "masks": args.masks, "mask map": args.mask_map, "slices": len(data)},
        split={"train": train_cases, "validation": val_cases, "seed": args.seed},
        metrics={**metrics, **{f"check: {c.label}": ("ok: " if c.passed else "FELL SHORT: ") + c.sentence()
                               for c in checks}},
        training={"adapter epochs": args.adapter_epochs, "head epochs": args.head_epochs if head else 0,
                  "batch size": args.batch_size, "lr": args.lr, "weight decay": args.weight_decay,
                  "minutes": round(budget.elapsed_minutes, 2),
                  "max minutes": args.max_minutes})
    return {"output": str(output), "metrics": metrics, "timings": dict(context.timings),
            "checks": [c.to_dict() for c in checks]}


def adapter_fell_short(output: Path) -> bool:
    """Whether the heads folder's last validation found its adapter below its floor."""
    config = json.loads((output / "config.json").read_text())
    return any(c.get("stage") == "adapter" and not c.get("passed", True) for c in config.get("checks") or [])


def heads_checks(metrics: dict, truth: "torch.Tensor", minutes: float) -> list:
    """The adapter's coarse and the heads' refined validation Dice against the trivial answers,
    pooled over the evaluated slices as the metrics are."""
    from ...training.quality import check
    from .validation import pooled_dice

    detail = f"{int(metrics['slices'])} validation slices, run {minutes:.1f} min"
    return [check("adapter", "AOVA adapter", "coarse validation Dice", metrics["coarse_dice"], truth, pooled_dice,
                  detail=detail),
            check("heads", "DiffuGTS heads", "refined validation Dice", metrics["refined_dice"], truth, pooled_dice,
                  detail=detail)]

"""`python -m DiffusionSegLib train sdseg ...`: one training run, from data folders to a checkpoint.

Starting points (exactly one):
- from scratch (default): first a small VAE on the images and masks, then the SDSeg model;
- `--pretrained REF`: VAE + 4-channel UNet from diffusers weights (the paper's setting);
- `--init-from CKPT`: fine-tune an existing SDSeg checkpoint, e.g. on volumes a user corrected
  in Slicer (learning from corrections); its VAE, scale factor and image size are kept.
`--objective supervised` trains the plain supervised UNet baseline instead, same data and budget.

`--max-minutes` bounds the whole run, data loading and final validation included: from scratch
the VAE stage gets VAE_SHARE of the budget (or --vae-minutes) and the denoiser stage what is
left. Each stage is announced before its progress events; a finished VAE stage is saved at once
and a cancelled denoiser stage saves its training state, so `--resume` continues from either.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from ...contract.errors import InvalidRequest, JobCancelled
from ...contract.events import JobContext
from ...training.budget import RunBudget
from ...training.checkpoint import (
    load_training_state,
    save_training_state,
    write_model_card,
)
from ...training.data import SliceSet, load_slices, parse_class_values, split_cases
from ...training.loop import (
    apply_threads,
    batches,
    log_metrics,
    random_flips,
    report,
    warmup_lambda,
)
from ...training.quality import check, report_check
from .vae_training import as_rgb_mask, needs_vae_stage, vae_stage
from .validation import class_targets, validate, validate_supervised


def _model_config(args: argparse.Namespace, image_size: int, class_values: list[float] | None,
                  initial: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint config. Fine-tuning (`initial` = the --init-from config) keeps the loaded
    model's conditioner dropout: the CLI's --dropout does not apply to a loaded model."""
    dropout = float(initial.get("conditioner_dropout", 0.2)) if initial is not None else args.dropout
    return {"kind": args.objective, "image_size": image_size, "num_classes": len(class_values or []),
            "class_values": class_values or [], "mask_map": args.mask_map, "latent_weight": args.latent_weight,
            "conditioner_dropout": dropout}


def present_classes(masks: torch.Tensor, n_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Per slice a class to train on, drawn among the classes present in its mask (as the
    reference data loader does), or uniformly from 1..K on a slice with none: a uniform draw
    would mostly ask for absent classes, i.e. empty targets, on sparse multi-class data."""
    chosen = []
    for mask in masks.cpu():
        present = torch.unique(mask)
        present = present[(present > 0) & (present <= n_classes)]
        if present.numel():
            chosen.append(present[int(torch.randint(present.numel(), (1,), generator=generator))])
        else:
            chosen.append(torch.randint(1, n_classes + 1, (1,), generator=generator)[0])
    return torch.stack(chosen).long()


def check_starting_point(args: argparse.Namespace) -> dict[str, Any] | None:
    """Reject combinations of starting-point options that cannot all be honoured; returns the
    --init-from checkpoint's config (None without --init-from)."""
    if args.pretrained and args.init_from:
        raise InvalidRequest("Give at most one of --pretrained and --init-from.")
    if args.objective == "supervised" and (args.pretrained or args.init_from):
        given = "--pretrained" if args.pretrained else "--init-from"
        raise InvalidRequest(f"--objective supervised trains the baseline UNet from scratch; it cannot start from "
                             f"{given}. Drop {given}, or train SDSeg (--objective sdseg).")
    if args.vae_from and (args.pretrained or args.init_from):
        given = "--pretrained" if args.pretrained else "--init-from"
        raise InvalidRequest(f"--vae-from applies to training from scratch; {given} already brings its own VAE.")
    if args.denoiser_skip and args.pretrained:
        raise InvalidRequest("--denoiser-skip is for training from scratch: a --pretrained UNet already predicts "
                             "the noise, and adding z_t to its output would discard that prior.")
    if not args.init_from:
        if args.denoiser_skip is None:  # from scratch: on; --pretrained: the paper's parameterisation
            args.denoiser_skip = not args.pretrained and args.objective == "sdseg"
        return None
    from .checkpoint import read_config

    initial = read_config(args.init_from)
    kind = initial.get("kind", "sdseg")
    if kind != "sdseg":
        raise InvalidRequest(f"--init-from {args.init_from} is a '{kind}' checkpoint, not an SDSeg one; fine-tuning "
                             f"needs a checkpoint written by `train sdseg` with --objective sdseg.")
    inherited = bool(initial.get("denoiser_skip", False))
    if args.denoiser_skip is not None and bool(args.denoiser_skip) != inherited:
        flag = "--denoiser-skip" if args.denoiser_skip else "--no-denoiser-skip"
        raise InvalidRequest(f"{flag} cannot change the parameterisation when fine-tuning: {args.init_from} was "
                             f"trained {'with' if inherited else 'without'} the denoiser skip. Drop {flag}.")
    args.denoiser_skip = inherited
    return initial


def _build(args: argparse.Namespace, train: SliceSet, val: SliceSet, context: JobContext, budget: RunBudget,
           output: Path, n_classes: int, device: torch.device) -> tuple[Any, dict, list, bool]:
    """The model to train, facts about how it was made (for the model card), the checks of its
    stages so far, and whether its VAE was trained in this run (a resumed denoiser state is then
    stale)."""
    from .build import (
        build_from_pretrained,
        build_from_scratch,
        small_unet_config,
        small_vae_config,
        vae_scale,
    )
    from .checkpoint import load_checkpoint

    facts: dict[str, Any] = {}
    if args.objective == "supervised":
        from diffusers import UNet2DModel

        from .baseline import SupervisedUNet, supervised_unet_config

        torch.manual_seed(args.seed)
        unet = UNet2DModel(**supervised_unet_config(args.image_size, args.unet_channels,
                                                    args.layers_per_block, n_classes))
        return SupervisedUNet(unet), {"start": "scratch (supervised baseline)"}, [], False
    if args.init_from:
        model, config = load_checkpoint(args.init_from)
        facts.update(start=f"fine-tuned from {args.init_from}", scale_factor_from="the initial checkpoint")
        return model.train(), facts, [], False
    if args.pretrained:
        model = build_from_pretrained(args.pretrained, unet_dropout=args.dropout,
                                      conditioner_dropout=args.dropout, num_classes=n_classes)
        from .schedule import schedule_mismatch

        note = schedule_mismatch(args.pretrained)
        if note:
            context.log(note, level="warning")
            facts["schedule"] = note
        return model, {"start": f"pretrained diffusers weights {args.pretrained}", **facts}, [], False
    vae_config = small_vae_config(args.image_size, args.vae_channels, args.latent_channels)
    vae, vae_facts, vae_check, retrained = vae_stage(args, vae_config, train, val, context, budget, output, device)
    facts.update(vae_facts)
    latent_size = args.image_size // vae_scale(vae)
    unet_config = small_unet_config(latent_size, args.latent_channels, args.unet_channels,
                                    args.layers_per_block, args.dropout, n_classes)
    model = build_from_scratch(vae, unet_config, args.dropout, seed=args.seed,
                               denoiser_skip=args.denoiser_skip)
    facts["start"] = "scratch"
    return model, facts, [vae_check] if vae_check is not None else [], retrained


def run(args: argparse.Namespace, context: JobContext) -> dict:
    """Train and write the checkpoint; returns the summary that ends the job's event stream."""
    from .checkpoint import save_checkpoint

    apply_threads(args.threads)
    if args.batch_size < 1:
        raise InvalidRequest("--batch-size must be at least 1.")
    initial = check_starting_point(args)
    output = Path(args.output).expanduser()
    budget = RunBudget(args.max_minutes, context, stage_count=2 if needs_vae_stage(args, output) else 1)
    output.mkdir(parents=True, exist_ok=True)
    image_size = args.image_size
    class_values = parse_class_values(args.classes)
    if initial is not None:
        image_size = int(initial["image_size"])
        # the loaded model's class embedding fixes the classes: --classes may only restate them
        known = [float(v) for v in initial.get("class_values") or []]
        if class_values is None:
            class_values = known or None
        elif len(class_values) != int(initial.get("num_classes", len(known))):
            raise InvalidRequest(f"--classes gives {len(class_values)} classes but {args.init_from} was trained "
                                 f"with {initial.get('num_classes', len(known))}; fine-tuning keeps the classes.")
    n_classes = len(class_values or [])
    with context.timed("load_data"):
        data = load_slices(args.images, args.masks, image_size, args.mask_map, class_values, args.intensity,
                           key=args.key)
    train_cases, val_cases = split_cases(data.cases, args.val_fraction, args.seed)
    train, val = data.subset(train_cases), data.subset(val_cases)
    context.log(f"{len(data)} slices from {len(set(data.cases))} cases: {len(train_cases)} training cases "
                f"({len(train)} slices), {len(val_cases)} validation cases ({len(val)} slices).")
    args.image_size = image_size
    from ...runtime.devices import resolve_device

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model, facts, checks, vae_retrained = _build(args, train, val, context, budget, output, n_classes, device)
    model.to(device).train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in trainable]
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(args.warmup_steps))
    from diffusers.training_utils import EMAModel

    ema = EMAModel(params, decay=args.ema_decay, use_ema_warmup=False)
    generator = torch.Generator().manual_seed(args.seed)
    step, best, history = 0, {"val_dice": -1.0}, []
    state = load_training_state(output) if args.resume and not vae_retrained else None  # a new VAE: start over
    if state is not None:
        weights, ema_weights, opt_tensors, info = state
        model.load_state_dict(weights, strict=False)
        if ema_weights is not None:
            ema.shadow_params = [ema_weights[n].to(device).clone() for n, _ in trainable]
        from ...training.checkpoint import restore_optimizer

        restore_optimizer(optimizer, opt_tensors, info["optimizer"])
        step, best, history = info["step"], info["best"], info["history"]
        ema.optimization_step = step
        scheduler.last_epoch = step
        generator.manual_seed(args.seed + step)
        context.log(f"Resumed at step {step} (best validation Dice {best['val_dice']:.4f}).")
    elif args.objective == "sdseg" and not args.init_from:
        first = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[:args.batch_size]
        factor = model.set_scale_factor_from(as_rgb_mask(train.masks[first] > 0).to(device))
        context.log(f"Latent scale factor 1/std(first batch) = {factor:.5f}.", metrics={"scale_factor": factor})
    config = _model_config(args, image_size, class_values, initial)
    config["split"] = {"seed": args.seed, "val_fraction": args.val_fraction,
                       "training_cases": train_cases, "validation_cases": val_cases}
    stage = budget.stage("train", "train the SDSeg conditioner and denoiser" if args.objective == "sdseg"
                         else "train the supervised UNet baseline")
    order = batches(len(train), min(args.batch_size, len(train)), generator)
    started = time.monotonic()
    total = args.steps
    loss_sum, loss_n = 0.0, 0
    eval_seconds = 0.0  # the last validation + save: kept in reserve so the final one fits the budget

    def save_state() -> None:
        save_training_state(output, dict(model.state_dict()),
                            {n: p for (n, _), p in zip(trainable, ema.shadow_params)}, optimizer,
                            {"step": step, "best": best, "history": history})

    def evaluate_and_save(final: bool = False) -> None:
        nonlocal best, eval_seconds
        began = time.monotonic()
        ema.store(params)
        ema.copy_to(params)
        metrics = validate(model, val if len(val) else train, n_classes, args.seed) \
            if args.objective == "sdseg" else validate_supervised(model, val if len(val) else train)
        history.append({"step": step, **metrics})
        log_metrics(context, f"step {step}: validation Dice {metrics['val_dice']:.4f}", step=step, **metrics)
        if metrics["val_dice"] >= best["val_dice"] or final and best.get("step") is None:
            best = {"step": step, **metrics}
            save_checkpoint(model, output, {**config, "best_step": step, "validation": metrics})
        ema.restore(params)
        save_state()
        eval_seconds = time.monotonic() - began

    with context.timed("train"):
        report(context, step, total)  # the stage's bar appears before its first 25 steps
        while step < total and not stage.exhausted(reserve_seconds=eval_seconds):
            if context.cancel_token.cancelled:  # between steps: the state is consistent, keep it
                save_state()
                kept = (f"Training was cancelled at step {step}. The finished stages and the training state are "
                        f"kept in {output}: run the same command with --resume to continue.")
                context.log(kept, level="warning")  # said as an event too: the protocol's cancel message is generic
                raise JobCancelled(kept)
            index = next(order)
            images, masks = random_flips(train.images[index], train.masks[index], generator)
            images, masks = images.to(device), masks.to(device)
            # seeded noise and timesteps come from the CPU generator only on the CPU; on a GPU
            # from the global generator seeded above (a CPU generator cannot drive CUDA sampling)
            loss_generator = generator if device.type == "cpu" else None
            if args.objective == "supervised":
                loss = model.loss(images * 2 - 1, masks > 0)
                terms = {"loss": loss.item()}
            else:
                class_labels = None
                if n_classes:
                    class_labels = present_classes(masks, n_classes, generator).to(device)
                    masks = masks == class_labels.view(-1, 1, 1)
                out = model.latent_loss(images * 2 - 1, as_rgb_mask(masks > 0), args.latent_weight,
                                        class_labels, loss_generator)
                loss = out.total
                terms = {"loss": loss.item(), "noise_l1": out.noise.item(), "latent_l1": out.latent.item()}
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            ema.step(params)
            step += 1
            loss_sum, loss_n = loss_sum + terms["loss"], loss_n + 1
            if step % 25 == 0:
                report(context, step, total, **terms, lr=scheduler.get_last_lr()[0])
            if step % args.val_every == 0:
                log_metrics(context, f"step {step}: mean loss {loss_sum / loss_n:.4f}", train_loss=loss_sum / loss_n)
                loss_sum, loss_n = 0.0, 0
                evaluate_and_save()
        if step % 25:
            report(context, step, total)  # where the stage ended (step count or budget)
        if not history or history[-1]["step"] != step:
            evaluate_and_save(final=True)
    minutes = (time.monotonic() - started) / 60
    stopped = "time budget" if step < total else "step count"
    final = check("train", "SDSeg stage" if args.objective == "sdseg" else "supervised baseline", "validation Dice",
                  best["val_dice"], class_targets((val if len(val) else train).masks, n_classes),
                  detail=f"{step} step{'s' if step != 1 else ''}, stopped by the {stopped}")
    report_check(context, final)
    checks.append(final)
    advice = []  # a stage that fell short at its step count needs more steps, not more minutes
    if any(c.stage == "train_vae" and not c.passed for c in checks) and f"trained here: {args.vae_steps} " in \
            facts.get("vae", ""):
        advice.append(f"The VAE stage ran all its --vae-steps {args.vae_steps}: raise them.")
    if not final.passed and stopped == "step count":
        advice.append(f"The SDSeg stage ran all its --steps {total}: raise them.")
    facts.update(steps=step, stopped_by=stopped, train_minutes=round(minutes, 2),
                 batch_size=args.batch_size, lr=args.lr, latent_weight=args.latent_weight,
                 ema_decay=args.ema_decay, threads=torch.get_num_threads(),
                 conditioner_dropout=config["conditioner_dropout"],
                 denoiser_skip=bool(getattr(model, "denoiser_skip", False)))
    if "train_vae" in context.timings:
        facts["vae_minutes"] = round(context.timings["train_vae"] / 60, 2)
    write_model_card(
        output, f"SDSeg checkpoint ({args.objective})",
        "Single-step latent diffusion segmentation (Lin et al., MICCAI 2024), trained with DiffusionSegLib. "
        "Weights are the EMA weights at the step with the best validation Dice." if args.objective == "sdseg" else
        "Plain supervised UNet baseline (BCE + soft Dice), trained with DiffusionSegLib for comparison with SDSeg.",
        data={"images": str(Path(args.images).resolve()), "masks": str(Path(args.masks).resolve()),
              "mask mapping": args.mask_map or "(binary masks)",
              "classes": ",".join(f"{v:g}" for v in class_values) if class_values else "binary",
              "slices": len(data), "image size": image_size},
        split={"seed": args.seed, "validation fraction": args.val_fraction,
               "training cases": train_cases, "validation cases": val_cases},
        metrics={"best step": best.get("step"), "validation Dice (single step)": round(best["val_dice"], 4),
                 "validation IoU": round(best.get("val_iou", float("nan")), 4),
                 **{f"check: {c.label}": ("ok: " if c.passed else "FELL SHORT: ") + c.sentence() for c in checks}},
        training=facts)
    return {"output": str(output), "best": best, "steps": step, "train_minutes": round(minutes, 2),
            "checks": [c.to_dict() for c in checks], "advice": " ".join(advice), **{
                k: v for k, v in facts.items() if k.startswith("vae")}}


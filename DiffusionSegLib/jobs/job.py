"""One job from request to labelmap file: the whole backend behind `run` and `segment`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..contract.errors import InvalidRequest
from ..contract.events import CancelToken, EventCallback, JobContext
from ..contract.request import JobRequest
from ..io.bundle import check_bundle_targets
from ..io.images import check_input_path, check_output_fits, check_output_path, read_volume
from ..io.output_files import claim_output
from ..methods import Method, get_method
from ..methods.base import check_image_size
from .outputs import check_result_targets, check_seg_input, stage_result
from .provenance import build_provenance


@dataclass
class JobResult:
    output: str
    segments: list[dict]
    timings: dict[str, float]
    outputs: dict[str, str] = field(default_factory=dict)  # the result bundle: name -> path
    model: str | None = None     # the model reference the job used (the method's default when none was given)
    device: str = ""             # the device it ran on ("cpu", "cuda:0" …)
    dtype: str = ""              # the compute dtype it ran in (after `auto` was resolved)


def create_method(name: str, params: dict, prompt: str | None, model: str | None,
                  context: JobContext) -> Method:
    """Validate everything about the method before any file or model is touched."""
    cls = get_method(name)
    info = cls.info
    params = info.resolve_params(params)
    prompt = (prompt or "").strip() or None
    if info.prompt == "required" and not prompt:
        raise InvalidRequest(f"{info.label} needs a text prompt (e.g. {', '.join(info.prompt_examples[:2]) or 'tumour'}).")
    model = model or info.default_model
    if info.needs_checkpoint and not model:
        raise InvalidRequest(f"{info.label} needs a trained checkpoint.",
                             hint=f"Pass --model with a folder made by `train {info.name}`.")
    method = cls(model=model, params=params, prompt=prompt, context=context)
    method.validate()
    return method


def run_job(request: JobRequest, emit: EventCallback, cancel_token: CancelToken | None = None,
            partial_results: bool = False) -> JobResult:
    """The order of checks is the contract: the request itself, then the method, then the files
    (input kind, output target, claim), then the image (size, ROI, slice range) — all before the
    model loads; the output is renamed into place only after a verified write. `partial_results`:
    also emit each batch's finished slices (`partial` events) for a front end that shows them."""
    from ..imaging.intensity import check_intensity_fit
    from ..imaging.slicing import plan_slices
    from ..runtime.devices import resolve_device
    from ..runtime.dtypes import resolve_policy
    from ..runtime.threads import configure_threads, current_threads
    from ..volume.several_prompts import check_several_prompts, segment_prompts

    request.validate()
    context = JobContext(emit=emit, cancel_token=cancel_token or CancelToken(), seed=request.seed,
                         dtype=request.dtype, partial_results=partial_results)
    methods = [create_method(request.method, request.params, prompt, request.model, context)
               for prompt in request.prompt_list()]
    check_several_prompts(methods)
    if request.evidence and len(methods) > 1:
        raise InvalidRequest("The evidence bundle holds one prompt's evidence; this request has several prompts.",
                             hint="Ask for evidence with one prompt per job.")
    method = methods[0]
    check_input_path(request.input)
    output = check_output_path(request.output, inputs=(request.input,), overwrite=request.overwrite)
    check_seg_input(output, request.input)
    check_result_targets(output, request, method.info.probability_maps if request.evidence else ())
    if request.evidence:
        check_bundle_targets(output, inputs=(request.input,), overwrite=request.overwrite)
    with claim_output(output):
        context.device = str(resolve_device(request.device))
        policy = resolve_policy(context.device, request.dtype)
        # A cap from the request; the process default (physical cores) is set by the command that
        # owns the process (segment/run), and serve/batch workers keep their own setting.
        threads = configure_threads(request.threads) if request.threads else current_threads()
        context.log(f"DiffusionSeg job: method {method.info.name}, device {context.device}, dtype {policy.name} "
                    f"({policy.reason}; VAE {policy.vae_description}), "
                    f"{threads} CPU thread(s), request {json.dumps(request.to_dict(), default=str)}")
        with context.timed("read"):
            volume = read_volume(request.input)
        notes = list(volume.notes)
        check_output_path(output, volume.reference.GetDimension(), inputs=(request.input,),
                          overwrite=request.overwrite)
        check_output_fits(volume, output)
        fit = check_intensity_fit(volume.array, volume.is_rgb, request.pipeline.intensity,
                                  volume.dicom.modality if volume.dicom else None)
        notes += [fit] if fit else []
        for note in notes:  # what was corrected or doubtful about the input: the user must see it
            emit({"event": "warning", "message": note})
        plan_slices(volume, request.pipeline.axis, request.roi, request.slice_range)
        context.check_cancelled()
        context.progress("load", 0, 1)
        with context.timed("load"):
            for each in methods:  # the same model for every prompt: loaded once (the runner's cache)
                each.load()
        check_image_size(method.image_size, f"The model {method.model or method.info.name}")
        context.progress("load", 1, 1)
        applied = getattr(getattr(method, "parts", None), "policy", None) or getattr(method, "policy", None)
        if applied is not None and applied.compute != policy.compute:
            context.log(f"Precision {applied.name}: {applied.reason}.")
        result, overlaps = segment_prompts(methods, request, volume, context, collect_evidence=request.evidence)
        context.check_cancelled()
        bundle, maps = {}, {}
        try:
            with context.timed("write"):
                if result.evidence is not None:
                    from ..volume.evidence import stage_evidence

                    bundle, maps = stage_evidence(result.evidence, method.info.name, request.pipeline,
                                                  volume.reference, output, overwrite=request.overwrite)
                record = build_provenance(request, methods, volume, device=context.device,
                                          dtype=(applied or policy).name, threads=threads, timings=context.timings,
                                          segments=result.segments, notes=notes,
                                          outputs={name: str(file.path) for name, file in bundle.items()})
                probability = {name: maps[name] for name in method.info.probability_maps if maps.get(name) is not None}
                staged, segments, empty = stage_result(result.labels, result.segments, volume, output, request,
                                                       record, probability)
                bundle.update(staged)
            with context.cancel_token.final():   # cancelled before this line: nothing is written
                # the bundle first, the labelmap last: a labelmap on disk means a complete result
                outputs = {name: str(file.commit()) for name, file in bundle.items()}
                for warning in (result.warning, empty):  # an empty or whole-tissue result: say so
                    if warning:
                        emit({"event": "warning", "message": warning})
                emit({"event": "result", "version": request.version,
                      "output": str(output) if "labelmap" in outputs else None, "outputs": outputs,
                      "segments": segments, "slices_segmented": result.slices_segmented,
                      "slices_skipped": result.slices_skipped, **({"overlaps": overlaps} if overlaps else {}),
                      "timings": {k: round(v, 4) for k, v in context.timings.items()}})
        finally:
            for file in bundle.values():
                file.discard()
    return JobResult(str(output), segments, dict(context.timings), outputs, method.model, context.device,
                     (applied or policy).name)

"""One job from request to labelmap file: the whole backend behind `run` and `segment`."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import InvalidRequest
from .events import CancelToken, EventCallback, JobContext
from .imageio import check_output_path, read_volume, write_labelmap
from .methods import Method, get_method
from .request import JobRequest


@dataclass
class JobResult:
    output: str
    segments: list[dict]
    timings: dict[str, float]


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


def run_job(request: JobRequest, emit: EventCallback, cancel_token: CancelToken | None = None) -> JobResult:
    from .dtypes import resolve_policy
    from .models import resolve_device
    from .multi_prompt import check_several_prompts, segment_prompts
    from .threads import configure_threads

    context = JobContext(emit=emit, cancel_token=cancel_token or CancelToken(), seed=request.seed,
                         dtype=request.dtype)
    methods = [create_method(request.method, request.params, prompt, request.model, context)
               for prompt in request.prompt_list()]
    check_several_prompts(methods)
    method = methods[0]
    output = check_output_path(request.output)
    context.device = str(resolve_device(request.device))
    policy = resolve_policy(context.device, request.dtype)
    threads = configure_threads(request.threads)
    context.log(f"DiffusionSeg job: method {method.info.name}, device {context.device}, dtype {policy.name} "
                f"({policy.reason}; VAE encoder {str(policy.vae_encoder)[6:]}, decoder float32), {threads} CPU thread(s), "
                f"request {json.dumps(request.to_dict(), default=str)}")
    with context.timed("read"):
        volume = read_volume(request.input)
    check_output_path(output, volume.reference.GetDimension())
    context.check_cancelled()
    context.progress("load", 0, 1)
    with context.timed("load"):
        for each in methods:  # the same model for every prompt: loaded once (the runner's cache)
            each.load()
    context.progress("load", 1, 1)
    applied = getattr(getattr(method, "parts", None), "policy", None) or getattr(method, "policy", None)
    if applied is not None and applied.compute != policy.compute:
        context.log(f"Precision {applied.name}: {applied.reason}.")
    result, overlaps = segment_prompts(methods, request, volume, context)
    context.check_cancelled()
    with context.timed("write"):
        write_labelmap(result.labels, volume.reference, output)
    emit({"event": "result", "output": str(output), "segments": result.segments,
          "slices_segmented": result.slices_segmented, "slices_skipped": result.slices_skipped,
          **({"overlaps": overlaps} if overlaps else {}),
          "timings": {k: round(v, 4) for k, v in context.timings.items()}})
    return JobResult(str(output), result.segments, dict(context.timings))



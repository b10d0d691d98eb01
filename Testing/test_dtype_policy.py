"""The dtype policy, the thread setting and how requests and the loader carry them."""

import pytest
import torch

from DiffusionSegLib.contract.errors import InvalidRequest
from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.runtime import dtypes, threads


def test_names_and_aliases():
    assert dtypes.normalise_dtype_name(None) == "auto"
    assert dtypes.normalise_dtype_name(" BF16 ") == "bfloat16"
    assert dtypes.normalise_dtype_name("fp32") == "float32"
    with pytest.raises(InvalidRequest, match="float8.*auto, float32, bfloat16, float16"):
        dtypes.normalise_dtype_name("float8")


@pytest.mark.parametrize("flags, native", [({"avx512f", "avx512_bf16"}, True), ({"amx_tile", "amx_bf16"}, True),
                                           ({"avx2", "avx512f", "avx512bw"}, False)])
def test_native_bf16_from_cpu_flags(flags, native):
    assert dtypes.cpu_has_native_bf16(flags) is native


def test_cpu_flags_parse_proc_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert dtypes.cpu_flags(info) == {"fpu", "sse", "avx512f", "avx512_bf16"}
    assert dtypes.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(dtypes, "cpu_has_native_bf16", lambda flags=None: native)
    policy = dtypes.resolve_policy("cpu", "auto")
    assert policy.compute == expected and policy.vae == torch.float32
    # Only the encoder whose latent the UNet reads follows bf16; decoder and reconstruction stay fp32.
    assert policy.vae_encoder == expected


def test_explicit_requests_and_the_vae_rule():
    fp16 = dtypes.resolve_policy("cpu", "float16")
    assert fp16.compute == torch.float16 and fp16.vae_encoder == torch.float32 and fp16.vae == torch.float32
    bf16 = dtypes.resolve_policy("cpu", "bfloat16")
    assert (bf16.compute, bf16.vae_encoder, bf16.vae) == (torch.bfloat16, torch.bfloat16, torch.float32)
    assert "encoder bfloat16" in bf16.vae_description and "float32 otherwise" in bf16.vae_description
    fp32 = dtypes.resolve_policy("cpu", "fp32")
    assert (fp32.compute, fp32.vae_encoder, fp32.vae) == (torch.float32,) * 3 and fp32.name == "float32"
    assert fp32.vae_description == "float32 (encoder and decoder)"


def test_request_carries_a_validated_dtype_and_threads():
    base = {"input": "in.nrrd", "output": "out.nrrd", "method": "adzus"}
    request = JobRequest.from_dict({**base, "dtype": "bf16", "threads": 2})
    assert request.dtype == "bfloat16" and request.threads == 2
    assert JobRequest.from_dict(base).dtype == "auto" and JobRequest.from_dict(base).threads == 0
    for field, value, message in [("dtype", "int8", "Unknown dtype"), ("dtype", 16, "dtype must be text"),
                                  ("threads", -1, "threads must be"), ("threads", True, "threads must be"),
                                  ("threads", 1.5, "threads must be")]:
        with pytest.raises(InvalidRequest, match=message):
            JobRequest.from_dict({**base, field: value})


def test_threads_default_to_physical_cores_and_cap(monkeypatch):
    import psutil

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 16 if logical else 8)
    assert threads.physical_cores() == 4  # 2-way SMT: 8 usable logical CPUs are 4 cores
    assert threads.choose_threads() == 4 and threads.choose_threads(2) == 2 and threads.choose_threads(64) == 4
    with pytest.raises(ValueError):
        threads.choose_threads(-1)


def test_configure_threads_sets_torch():
    before = torch.get_num_threads()
    try:
        assert threads.configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert torch.get_num_interop_threads() >= 1
    finally:
        torch.set_num_threads(before)


def test_loader_applies_the_policy_per_part():
    from DiffusionSegLib.models.stable_diffusion import load_stable_diffusion

    parts = load_stable_diffusion("random:tiny-sd", "cpu", "bfloat16")
    assert parts.dtype == torch.bfloat16
    assert parts.unet.dtype == torch.bfloat16 and parts.text_encoder.dtype == torch.bfloat16
    assert parts.vae.decoder.conv_in.weight.dtype == torch.float32
    assert parts.vae.post_quant_conv.weight.dtype == torch.float32
    assert parts.encode_prompt(["a cell"]).dtype == torch.bfloat16


def test_cli_dtype_reaches_the_request():
    from DiffusionSegLib.cli.commands.segment import request_from_args
    from DiffusionSegLib.cli.main import build_parser

    args = build_parser().parse_args(["segment", "--input", "a.png", "--output", "b.nrrd", "--method", "adzus",
                                      "--dtype", "fp32", "--threads", "3"])
    request = request_from_args(args)
    assert request.dtype == "float32" and request.threads == 3


def test_auto_keeps_small_models_fp32_on_cpu(monkeypatch):
    monkeypatch.setattr(dtypes, "cpu_has_native_bf16", lambda flags=None: True)
    assert dtypes.resolve_policy("cpu", "auto", unet_parameters=1_400_000).compute == torch.float32
    assert dtypes.resolve_policy("cpu", "auto", unet_parameters=860_000_000).compute == torch.bfloat16
    assert dtypes.resolve_policy("cpu", "bfloat16", unet_parameters=1_400_000).compute == torch.bfloat16
    from DiffusionSegLib.models.stable_diffusion import load_stable_diffusion

    tiny = load_stable_diffusion("random:tiny-sd", "cpu", "auto")
    assert tiny.dtype == torch.float32 and tiny.unet.dtype == torch.float32 and "small UNet" in tiny.policy.reason
    assert tiny.vae.encoder.conv_in.weight.dtype == torch.float32

"""`benchmark`: per-stage floors (bare network calls), FLOPs and the dtype comparison."""

import json

from DiffusionSegLib.cli.arguments import parse_params
from DiffusionSegLib.cli.main import build_parser, main
from DiffusionSegLib.tools.benchmark import (
    format_speedup,
    format_table,
    run_benchmark,
    speedup,
)


def args_for(*extra):
    """The options `benchmark` parses, with its parameters read as the command reads them."""
    args = build_parser().parse_args(["benchmark", "--method", "adzus", "--model", "random:tiny-sd", "--device", "cpu",
                                      "--slices", "1", "--threads", "1", *extra])
    args.params = parse_params(args.param)
    return args


def test_stages_have_floors_from_the_calls_they_make():
    report = run_benchmark(args_for("--dtype", "float32"), lambda event: None, dtype="float32")
    stages = report["stages"]
    # DDIM inversion to t = 300 with 50 steps over 1000 makes 15 UNet calls; the capture pass one.
    assert stages["inversion"]["calls"] == {"unet": 15}
    assert stages["attention"]["calls"] == {"unet": 1}
    assert stages["encode"]["calls"] == {"vae_encoder": 1}  # the prompt embedding is cached per job
    for name in ("inversion", "attention", "encode"):
        assert stages[name]["floor_per_slice"] > 0 and stages[name]["floor_ratio"] > 0
        assert stages[name]["gflop_per_slice"] > 0
    # One UNet call's FLOPs × 15 ≈ the inversion's FLOPs (same shapes every step).
    ratio = stages["inversion"]["gflop_per_slice"] / stages["attention"]["gflop_per_slice"]
    assert 13 < ratio < 17
    assert "merge" in stages and "calls" not in stages["merge"]  # no network call, no floor
    assert report["dtype"] == "float32" and report["threads"] == 1
    table = format_table(report)
    assert "x floor" in table and "unet×15" in table


def test_compare_dtypes_runs_both_and_prints_the_speedup(tmp_path, capsys):
    output = tmp_path / "report.json"
    code = main(["benchmark", "--method", "adzus", "--model", "random:tiny-sd", "--device", "cpu", "--slices", "1",
                 "--threads", "1", "--param", "latent_mode=clean", "--dtype", "bfloat16", "--compare-dtypes",
                 "--output", str(output)])
    assert code == 0
    report = json.loads(output.read_text())
    assert [run["dtype"] for run in report["runs"]] == ["float32", "bfloat16"]
    assert set(report["speedup"]) >= {"encode", "attention", "total"}
    assert report["speedup"] == speedup(*report["runs"])
    assert "speed-up bfloat16 over float32" in format_speedup(*report["runs"])
    assert "speed-up" in capsys.readouterr().err


def test_a_floor_replays_each_call_under_the_autocast_it_ran_in():
    """The bf16 ADZUS encoder runs through autocast: its floor must time the same bf16 kernels."""
    import torch

    from DiffusionSegLib.contract.events import CancelToken
    from DiffusionSegLib.tools.profiling import ProfilingContext, recording, time_floor

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return x * 2

    networks = {"probe": Probe()}
    context = ProfilingContext(emit=lambda event: None, cancel_token=CancelToken())
    context.device = "cpu"
    with recording(context, networks):
        with context.timed("encode"), torch.autocast("cpu", dtype=torch.bfloat16):
            networks["probe"](torch.ones(2))
        with context.timed("attention"):
            networks["probe"](torch.ones(2))
    seen.clear()
    floors = time_floor(context, networks)
    assert floors["encode"]["calls"] == {"probe": 1} and floors["attention"]["calls"] == {"probe": 1}
    assert seen.count(torch.bfloat16) == 2 and seen.count(None) == 2  # warm-up + timed run of each

"""Measure the warm worker against one-shot jobs (the figures in docs/service.md).

    python -m DiffusionSegLib.tools.service_measure --model DIR --images A.png B.png … [--jobs 100] [--out m.json]

Runs, with real processes and real HTTP: a cold one-shot `segment`; then on one `serve`
process the first job (cold worker), the same image with a new prompt, a second image, N
consecutive jobs with the worker's RSS after each, cancel latency (DELETE in the middle of a
UNet pass until the `cancelled` event), and two clients at once. Every job uses ADZUS with
`proposals=shared` unless --params says otherwise. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..serve.client import ServiceClient, read_token


def _request(image: str, prompt: str, args: argparse.Namespace, **params) -> dict:
    return {"input": str(Path(image).resolve()), "method": "adzus", "prompt": prompt, "model": args.model,
            "device": args.device, "params": {**json.loads(args.params), **params}}


def _timed_job(client: ServiceClient, request: dict, forget: bool = True) -> dict:
    """One job to its end; `forget`: then delete it on the server, as the Slicer panel does."""
    start = time.perf_counter()
    jobs: list[str] = []
    final = client.run(request, on_submitted=jobs.append)
    wall = time.perf_counter() - start
    if final["event"] != "result":
        raise RuntimeError(final)
    if forget:
        client.cancel(jobs[0])
    return {"wall_s": round(wall, 3), "load_s": final["timings"].get("load"),
            "timings": final["timings"]}


def cold_one_shot(args: argparse.Namespace, folder: Path) -> dict:
    command = [sys.executable, "-m", "DiffusionSegLib", "segment", "--method", "adzus", "--model", args.model,
               "--input", args.images[0], "--output", str(folder / "one-shot.nrrd"), "--prompt", args.prompts[0],
               "--device", args.device]
    for name, value in json.loads(args.params).items():
        command += ["--param", f"{name}={value}"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    wall = time.perf_counter() - start
    final = json.loads(done.stdout.splitlines()[-1])
    return {"wall_s": round(wall, 3), "load_s": final.get("timings", {}).get("load"), "exit": done.returncode}


def cancel_latency(client: ServiceClient, args: argparse.Namespace, repeats: int) -> dict[str, list[float]]:
    """Seconds from DELETE to the `cancelled` event, each time `delay` s after the first UNet
    call of the inversion ended (so the cancel lands inside the next UNet pass); with the time
    from the model being ready to that first call's end (VAE encode + one UNet pass)."""
    latencies, first_call = [], []
    for index in range(repeats):
        request = _request(args.images[index % len(args.images)], f"cancel {index}", args,
                           latent_mode="ddim_inversion", inversion_steps=1000, timestep=999, proposals="prompt")
        job = client.submit(request)
        start = loaded = None
        for event in client.events(job):
            if event.get("stage") == "load" and event.get("done") == 1:
                loaded = time.perf_counter()
            if start is None and event.get("stage") == "inversion" and event.get("done") == 1:
                first_call.append(round(time.perf_counter() - (loaded or time.perf_counter()), 3))
                time.sleep(args.cancel_delay)
                start = time.perf_counter()
                client.cancel(job)
            if event["event"] in ("result", "error"):
                if start is None or event.get("code") != "cancelled":
                    raise RuntimeError(event)
                latencies.append(round(time.perf_counter() - start, 3))
    return {"latency_s": latencies, "encode_and_first_unet_call_s": first_call}


def two_clients(url: str, token: str, args: argparse.Namespace) -> dict:
    walls: dict[str, float] = {}

    def one(prompt: str, image: str) -> None:
        walls[prompt] = _timed_job(ServiceClient(url, token), _request(image, prompt, args))["wall_s"]

    threads = [threading.Thread(target=one, args=(f"client {i} {args.prompts[0]}", args.images[i % len(args.images)]))
               for i in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"each_wall_s": sorted(walls.values()), "total_wall_s": round(time.perf_counter() - start, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--prompts", nargs="+", default=["cell", "nucleus", "background", "stain"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--params", default='{"proposals": "shared"}', help="JSON method parameters for every job")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--cancel-repeats", type=int, default=5)
    parser.add_argument("--cancel-delay", type=float, default=0.3)
    parser.add_argument("--only-cancel", action="store_true",
                        help="measure only the cancel latency (e.g. with a full-size model on a CPU)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="diffusionseg-measure-"))
    results: dict = {"model": args.model, "device": args.device, "params": json.loads(args.params),
                     "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
    if not args.only_cancel:
        results["cold_one_shot"] = cold_one_shot(args, folder)
    roots = sorted({str(Path(image).resolve().parent) for image in args.images})
    command = [sys.executable, "-m", "DiffusionSegLib", "serve", "--token-file", str(folder / "token")]
    for root in roots:
        command += ["--allow-root", root]
    start = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = json.loads(server.stdout.readline())
        results["serve_ready_s"] = round(time.perf_counter() - start, 3)
        client = ServiceClient(ready["url"], read_token(folder / "token"))
        if args.only_cancel:
            results["cancel_latency_s"] = cancel_latency(client, args, args.cancel_repeats)
            return _report(results, args)
        image, second = args.images[0], args.images[1 % len(args.images)]
        results["first_job_cold_worker"] = _timed_job(client, _request(image, args.prompts[0], args))
        results["same_image_new_prompt"] = _timed_job(client, _request(image, args.prompts[1], args))
        results["same_image_new_prompt_prompt_conditioned"] = _timed_job(
            client, _request(image, args.prompts[2], args, proposals="prompt"))
        results["second_image"] = _timed_job(client, _request(second, args.prompts[0], args))
        rss, walls = [], []
        for index in range(args.jobs):
            request = _request(args.images[index % len(args.images)], args.prompts[index % len(args.prompts)], args)
            walls.append(_timed_job(client, request)["wall_s"])
            rss.append(client.health()["memory"]["process_rss_bytes"])
        mb = [round(value / 2**20, 1) for value in rss]
        results["consecutive_jobs"] = {"count": args.jobs, "wall_s_median": statistics.median(walls) if walls else None,
                                       "rss_mb_after_each": mb, "rss_mb_first_last_max": [mb[0], mb[-1], max(mb)]
                                       if mb else None}
        results["cancel_latency_s"] = cancel_latency(client, args, args.cancel_repeats)
        results["two_clients_at_once"] = two_clients(ready["url"], client.token, args)
        results["health_after"] = {k: v for k, v in client.health().items() if k in ("models", "features", "jobs_run")}
    finally:
        server.terminate()
        server.wait(30)
    return _report(results, args)


def _report(results: dict, args: argparse.Namespace) -> int:
    text = json.dumps(results, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

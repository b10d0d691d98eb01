"""`--engine ray`: one warm worker (a CaseWorker with its Runner) per Ray actor, one actor per
GPU, or per CPU slot when the cluster has no GPU.

Ray schedules; the worker is the same class the local engine uses, so outputs and summary rows
are the same, and the label volumes are identical bit for bit for the same device and thread
count. `--ray-address` joins a running cluster (every node needs the same DiffusionSegLib and a
shared folder for images and outputs); otherwise a local Ray starts, quietly, and stops at the
end. Install with `pip install -e ".[ray]"`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import __version__
from ..contract.errors import DeviceUnavailable, InvalidRequest
from ..contract.events import CancelToken
from .manifest import Case
from .records import failed_row
from .worker import CaseWorker

LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # the driver sends paths, not images: a small store starts faster
CONNECT_TIMEOUT_S = 5.0
WAIT_SECONDS = 0.25  # how often the driver checks for a cancel while cases run


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    workers: int = 0            # 0: one per GPU, else one per CPU slot
    cpus_per_worker: int = 1
    threads: int = 0            # torch threads per worker; 0: cpus_per_worker on CPU
    use_gpus: bool = True       # False when the cases ask for device 'cpu'


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidRequest("--engine ray needs Ray, which is not installed.",
                             hint='Install it with `pip install -e ".[ray]"` (or `pip install ray`), '
                                  "or use --engine local.") from None
    return ray


def start(ray: Any, options: RayOptions) -> None:
    """Join `options.address`, or start a local Ray sized for the requested workers."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if options.address:  # the cluster's own settings (dashboard, object store) stay as they are
        try:
            _check_reachable(options.address)
            ray.init(address=options.address, **quiet)
        except (ConnectionError, RuntimeError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise DeviceUnavailable(
                f"Could not join the Ray cluster at {options.address} ({reason}).",
                hint="Check that the cluster runs there (`ray status`) and the address; a cluster with Ray's "
                     "token authentication needs RAY_AUTH_MODE=token and its token (~/.ray/auth_token or "
                     "RAY_AUTH_TOKEN). Or leave out --ray-address to start a local Ray.") from None
        return
    # Workers of a local Ray are new processes: let them import this very DiffusionSegLib.
    package_root = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    cpus = options.workers * options.cpus_per_worker if options.workers else (os.cpu_count() or 1)
    ray.init(num_cpus=cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False, **quiet)


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable head for minutes; a plain host:port is tried once, quickly.
    ('auto' and ray:// addresses are left to Ray.)"""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ConnectionError(f"nothing answers at {address}: {error.strerror or error}") from None


def plan_workers(ray: Any, options: RayOptions, cases: int) -> tuple[int, dict]:
    """How many actors, each with which resources; refuses a request the cluster cannot meet
    (Ray would otherwise wait for it forever)."""
    available = ray.cluster_resources()
    gpus = int(available.get("GPU", 0)) if options.use_gpus else 0
    per_actor = {"num_cpus": options.cpus_per_worker, "num_gpus": 1 if gpus else 0}
    capacity = gpus if gpus else int(available.get("CPU", 0)) // options.cpus_per_worker
    wanted = options.workers or capacity
    if wanted > capacity or capacity == 0:
        slot = "GPU" if gpus else f"{options.cpus_per_worker}-CPU slot"
        raise InvalidRequest(f"The Ray cluster has room for {capacity} worker(s) (one per {slot}); "
                             f"{wanted} were asked for.", hint="Lower --workers or --cpus-per-worker.")
    return max(1, min(wanted, cases)), per_actor


def run_ray(cases: Sequence[Case], on_start: Callable[[Case], None], on_row: Callable[[dict], None],
            token: CancelToken, log_dir: str, options: RayOptions, log: Callable[[str], None]) -> dict:
    ray = import_ray()
    start(ray, options)
    try:
        count, per_actor = plan_workers(ray, options, len(cases))
        threads = options.threads or (0 if per_actor["num_gpus"] else options.cpus_per_worker)
        remote = ray.remote(CaseWorker).options(max_restarts=1, **per_actor)
        actors = [remote.remote(log_dir, threads) for _ in range(count)]
        versions = set(ray.get([a.version.remote() for a in actors]))
        if versions != {__version__}:
            raise InvalidRequest(f"The Ray workers run DiffusionSegLib {', '.join(sorted(versions))}, this "
                                 f"driver {__version__}.", hint="Install the same version on every node.")
        log(f"Ray: {count} worker(s), {per_actor['num_gpus']} GPU and {per_actor['num_cpus']} CPU each.")
        _dispatch(ray, actors, remote, deque(cases), on_start, on_row, token, log_dir, threads)
        return {"engine": "ray", "workers": count, "ray_address": options.address or "local"}
    finally:
        ray.shutdown()


def _dispatch(ray: Any, actors: list, remote: Any, pending: deque, on_start: Callable[[Case], None],
              on_row: Callable[[dict], None], token: CancelToken, log_dir: str, threads: int) -> None:
    """Keep every actor busy with one case; a case whose actor died is recorded as failed and
    the actor replaced (once per worker), so one crash does not end the cohort."""
    running: dict[Any, tuple[Any, Case]] = {}
    replacements = len(actors)

    def submit(actor: Any) -> None:
        if pending:
            case = pending.popleft()
            on_start(case)
            running[actor.run_case.remote(case)] = (actor, case)

    for actor in actors:
        submit(actor)
    while running:
        token.check()
        ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_SECONDS)
        for ref in ready:
            actor, case = running.pop(ref)
            try:
                on_row(ray.get(ref))
            except ray.exceptions.RayActorError as error:
                on_row(failed_row(case, "worker_lost", f"The Ray worker running this case died: {error}"))
                actor = remote.remote(log_dir, threads) if replacements > 0 else None
                replacements -= 1
            except ray.exceptions.RayTaskError as error:
                on_row(failed_row(case, "internal", f"Unexpected error in the Ray worker: {error}"))
            if actor is not None:
                submit(actor)
    for case in pending:  # every worker was lost
        on_row(failed_row(case, "worker_lost", "No Ray worker was left to run this case."))


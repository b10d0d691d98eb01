"""Model errors that say what happened: an unreachable hub or offline mode is named as such with
the download command, after one short attempt (no retry storm: requests are counted on a
local stand-in for the hub); a folder of the wrong kind names its kind and its use, before any
weights are loaded (so no flood of weight warnings)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import SimpleITK as sitk
from helpers import rgb_image

from DiffusionSegLib.contract.errors import EXIT_MODEL, ModelLoadFailed, ModelNotFound
from DiffusionSegLib.models import hub
from DiffusionSegLib.models.stable_diffusion import load_stable_diffusion
from DiffusionSegLib.testing.models import save_tiny_sdseg

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a cache snapshot is named by its commit


class RefusingHub:
    """A TCP endpoint that reads each request line and closes the connection without an answer,
    recording the paths asked for."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.paths: list[str] = []
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                self.paths.append(conn.recv(4096).split(b" ")[1].decode())
            except (OSError, IndexError):
                self.paths.append("?")
            conn.close()

    def asked_for(self, repo: str) -> int:
        """Requests about `repo` (huggingface_hub may make unrelated requests of its own)."""
        return sum(repo in path for path in self.paths)


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """An empty cache and a hub stand-in, for this test only."""
    import huggingface_hub.constants as constants

    stand_in = RefusingHub()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "ENDPOINT", stand_in.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_decisions", {})
    yield constants, stand_in
    stand_in.server.close()


def test_unreachable_hub_is_named_after_one_attempt(hub_env):
    _, stand_in = hub_env
    with pytest.raises(ModelNotFound) as error:
        load_stable_diffusion("someone/not-cached", "cpu", components=("unet", "vae", "text_encoder"))
    text = str(error.value)
    assert "Could not reach the Hugging Face hub" in text and stand_in.url in text
    assert "`hf download someone/not-cached`" in text and "`huggingface-cli download someone/not-cached`" in text
    assert stand_in.asked_for("someone/not-cached") == 1  # one probe for three components, no retries


def test_offline_mode_is_named_and_never_touches_the_network(hub_env, monkeypatch):
    constants, stand_in = hub_env
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFound, match=r"Offline mode \(HF_HUB_OFFLINE=1\)") as error:
        load_stable_diffusion("someone/not-cached", "cpu", components=("unet",))
    assert "hf download someone/not-cached" in str(error.value)
    assert stand_in.paths == []


def test_a_cached_model_loads_when_the_hub_is_unreachable(hub_env, tiny_sd_path):
    constants, stand_in = hub_env
    repo = Path(constants.HF_HUB_CACHE) / "models--someone--tiny"
    shutil.copytree(tiny_sd_path, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    parts = load_stable_diffusion("someone/tiny", "cpu", components=("unet", "vae"))
    assert parts.unet is not None and parts.vae is not None
    assert stand_in.asked_for("someone/tiny") == 1  # the probe; then the cache only


@pytest.fixture(scope="module")
def sdseg_folder(tmp_path_factory):
    return save_tiny_sdseg(tmp_path_factory.mktemp("kinds") / "sdseg")


def test_folders_of_the_wrong_kind_say_what_they_are(sdseg_folder, tiny_sd_path, tmp_path):
    from DiffusionSegLib.methods.sdseg.checkpoint import read_config

    with pytest.raises(ModelLoadFailed, match="is an SDSeg checkpoint.*use --method sdseg"):
        load_stable_diffusion(str(sdseg_folder), "cpu")
    with pytest.raises(ModelLoadFailed, match="is a Stable Diffusion .*--method adzus or --method diffugts"):
        read_config(tiny_sd_path)
    heads = tmp_path / "heads"
    heads.mkdir()
    (heads / "config.json").write_text(json.dumps({"format": "diffugts-heads", "version": 1}))
    with pytest.raises(ModelLoadFailed, match=f"--param heads={heads}"):
        load_stable_diffusion(str(heads), "cpu")


def test_sdseg_checkpoint_given_to_adzus_on_the_command_line(sdseg_folder, tmp_path):
    sitk.WriteImage(rgb_image(), str(tmp_path / "cell.png"))
    done = subprocess.run([sys.executable, "-m", "DiffusionSegLib", "segment", "--method", "adzus", "--input",
                           str(tmp_path / "cell.png"), "--output", str(tmp_path / "seg.nrrd"), "--model",
                           str(sdseg_folder), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == EXIT_MODEL
    error = json.loads(done.stdout.splitlines()[-1])
    assert error["code"] == "model_load_failed" and "use --method sdseg" in error["message"]
    lowered = done.stderr.lower()
    assert "newly initialized" not in lowered and "were not used" not in lowered and "weights" not in lowered
    assert not (tmp_path / "seg.nrrd").exists()

"""Which worker requirements are missing from an environment (pure Python, no pip, no Qt)."""

from __future__ import annotations

import importlib.metadata
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"
TORCH_REQUIREMENT = "torch>=2.1"


def readRequirements(path: str | Path = REQUIREMENTS_FILE) -> list[str]:
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def missingRequirements(requirements: list[str], installedVersion=importlib.metadata.version) -> list[str]:
    """The requirements that are not installed or whose installed version is out of range."""
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version

    missing = []
    for text in requirements:
        requirement = Requirement(text)
        try:
            version = installedVersion(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        try:
            if requirement.specifier and not requirement.specifier.contains(Version(version), prereleases=True):
                missing.append(text)
        except InvalidVersion:
            missing.append(text)
    return missing


def packageIndexReachable(timeout: float = 5.0, environ=os.environ) -> bool:
    """Best effort: can we open a connection to the package index (or the configured proxy)?"""
    proxy = environ.get("HTTPS_PROXY") or environ.get("https_proxy")
    index = environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    url = urlparse(proxy or index)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

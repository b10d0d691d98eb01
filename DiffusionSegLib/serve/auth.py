"""The bearer token of a `serve` instance.

Every call but /v1/health needs `Authorization: Bearer <token>`. The token comes from
--token-file (made with mode 0600 and a fresh random token when it does not exist yet), so a
client started by the same user reads it from the file and nothing secret is ever on a command
line, where other users of the machine could see it in the process list.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path

MIN_TOKEN_LENGTH = 16


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_token_file(path: Path, token: str) -> None:
    """Create the file readable by its owner only (0600 from the start, not chmod'ed later)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")


def load_or_create_token(token_file: str | None) -> tuple[str, Path]:
    """(token, file): read --token-file, or create it (or a fresh file in the temporary folder
    when none is named) holding a new random token."""
    if token_file:
        path = Path(token_file).expanduser()
        if path.exists():
            token = path.read_text(encoding="utf-8").strip()
            if len(token) < MIN_TOKEN_LENGTH:
                raise SystemExit(f"The token in {path} is shorter than {MIN_TOKEN_LENGTH} characters; "
                                 "use a random token (or delete the file to have one generated).")
            if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                print(f"warning: {path} is readable by other users; `chmod 600 {path}`.", file=sys.stderr)
            return token, path
    else:
        folder = Path(tempfile.mkdtemp(prefix="diffusionseg-token-"))
        path = folder / "token"
    token = new_token()
    write_token_file(path, token)
    return token, path


def token_matches(header: str | None, token: str) -> bool | None:
    """None: no bearer credentials at all; otherwise whether they are the right token
    (compared in constant time)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return hmac.compare_digest(value.strip().encode(), token.encode())

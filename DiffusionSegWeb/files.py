"""Where the app keeps patient data: one private temporary folder, removed on every ending.

Uploads arrive from the browser in chunks of whole files; each is checked against the upload limit
before it is written (0600, in a 0700 folder). A zipped DICOM series is unpacked with the same
limit and no path leaving the folder. Paths on the server are accepted only under the folders the
operator allowed (`--allow-root`), so a browser user cannot read arbitrary files of the server.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import zipfile
from pathlib import Path

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".png", ".jpg", ".jpeg",
                   ".bmp", ".tif", ".tiff", ".dcm", ".zip")


class UploadRefused(ValueError):
    """An upload or a server path the app will not open; the message is for the user."""


def volumeSuffix(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return suffix
    return ""


class Workspace:
    """The app's private temporary folder (0700) with one sub-folder per upload or job."""

    def __init__(self, maxUploadBytes: int, allowedRoots: list[str | Path] | None = None):
        self.maxUploadBytes = int(maxUploadBytes)
        self.allowedRoots = [Path(r).resolve() for r in (allowedRoots or [])]
        self.root = Path(tempfile.mkdtemp(prefix="diffusionseg-web-"))
        os.chmod(self.root, 0o700)
        self._counter = 0
        atexit.register(self.remove)
        self._previousHandlers = {}
        for name in ("SIGTERM", "SIGHUP"):   # SIGHUP: a closed terminal; absent on Windows
            signum = getattr(signal, name, None)
            try:
                if signum is not None:
                    self._previousHandlers[signum] = signal.signal(signum, self._removeOnSignal)
            except ValueError:   # not the main thread: atexit still removes it on a normal exit
                pass

    def _removeOnSignal(self, signum, frame):
        self.remove()
        previous = self._previousHandlers.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise SystemExit(128 + signum)

    def newFolder(self, kind: str) -> Path:
        self._counter += 1
        folder = self.root / f"{kind}-{self._counter}"
        folder.mkdir(mode=0o700)
        return folder

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        for signum, previous in self._previousHandlers.items():
            try:
                if signal.getsignal(signum) == self._removeOnSignal and previous is not None:
                    signal.signal(signum, previous)
            except ValueError:
                pass
        self._previousHandlers = {}

    # -- uploads ---------------------------------------------------------------------------------

    def receiveUpload(self, files: list[dict]) -> list[Path]:
        """Write browser files ({name, size, content}) into a new folder; unpack zips."""
        total = sum(int(f.get("size") or len(_content(f))) for f in files)
        if total > self.maxUploadBytes:
            raise UploadRefused(f"The upload is {total / 1e6:.1f} MB; this server accepts at most "
                                f"{self.maxUploadBytes / 1e6:.0f} MB (--max-upload-mb).")
        folder = self.newFolder("upload")
        written = []
        for item in files:
            name = Path(str(item.get("name") or "upload")).name   # never a path from the browser
            if not volumeSuffix(name):
                raise UploadRefused(f"'{name}' is not a supported image file (NRRD, NIfTI, MHA, "
                                    "PNG/JPG/BMP/TIFF, DICOM files or a .zip of a DICOM series).")
            path = folder / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(_content(item))
            written.append(path)
        return self._expandZips(written, folder)

    def _expandZips(self, paths: list[Path], folder: Path) -> list[Path]:
        result = []
        for path in paths:
            if volumeSuffix(path.name) != ".zip":
                result.append(path)
                continue
            target = folder / (path.stem + "-files")
            target.mkdir(mode=0o700)
            result.extend(self._unzip(path, target))
            path.unlink()
        return result

    def _unzip(self, path: Path, target: Path) -> list[Path]:
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise UploadRefused(f"'{path.name}' is not a readable zip file ({exc}).") from exc
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            unpacked = sum(m.file_size for m in members)
            if unpacked > self.maxUploadBytes:
                raise UploadRefused(f"'{path.name}' unpacks to {unpacked / 1e6:.1f} MB; this server accepts "
                                    f"at most {self.maxUploadBytes / 1e6:.0f} MB (--max-upload-mb).")
            out = []
            for index, member in enumerate(members):
                # Flatten: no member name is used as a path, so nothing can leave the folder.
                destination = target / f"{index:05d}-{Path(member.filename).name}"
                with archive.open(member) as source, open(destination, "xb") as sink:
                    shutil.copyfileobj(source, sink)
                os.chmod(destination, 0o600)
                out.append(destination)
        if not out:
            raise UploadRefused(f"'{path.name}' contains no files.")
        return out

    # -- paths on the server ---------------------------------------------------------------------

    def serverPath(self, text: str) -> list[Path]:
        """The file (or the files of a DICOM folder) at `text`, if it lies under an allowed root."""
        if not self.allowedRoots:
            raise UploadRefused("Opening paths on the server is off; start the app with --allow-root FOLDER.")
        path = Path(os.path.expanduser(text.strip())).resolve()
        if not any(path == root or root in path.parents for root in self.allowedRoots):
            roots = ", ".join(str(r) for r in self.allowedRoots)
            raise UploadRefused(f"{path} is outside the folders this server may open ({roots}).")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            if not files:
                raise UploadRefused(f"The folder {path} has no files.")
            return files
        if not path.is_file():
            raise UploadRefused(f"{path} does not exist.")
        if volumeSuffix(path.name) == ".zip":
            return self._unzip(path, self.newFolder("unzipped"))
        if not volumeSuffix(path.name):
            raise UploadRefused(f"'{path.name}' is not a supported image file.")
        return [path]


def readableBySlicer(paths: list[Path]) -> list[Path]:
    """slicer-core's storage nodes have no PNG/JPEG/BMP/TIFF reader (its ITK image IO factories for
    them are not in the wheel): such pictures are converted by SimpleITK (the backend's reader,
    RGB kept as a 3-component vector) to NRRD beside the original, in the private folder."""
    import SimpleITK as sitk

    out = []
    for path in paths:
        if volumeSuffix(path.name) in PICTURE_SUFFIXES:
            converted = path.with_name(path.name + ".nrrd")
            try:
                sitk.WriteImage(sitk.ReadImage(str(path)), str(converted))
            except RuntimeError as exc:
                raise UploadRefused(f"'{path.name}' could not be read as an image ({str(exc).strip()[-200:]}).") from exc
            path = converted
        out.append(path)
    return out


def _content(item: dict) -> bytes:
    content = item.get("content") or b""
    if isinstance(content, list):
        content = b"".join(content)
    return bytes(content)

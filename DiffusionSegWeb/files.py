"""Where the app keeps patient data: one private temporary folder, removed on every ending.

Uploads arrive from the browser in chunks of whole files; each is counted by the bytes that
actually arrived (the size a browser declares is only its word) and checked against the upload
limit and the folder's total quota before it is written (0600, in a 0700 folder). A zipped DICOM
series is checked by its member count and unpacked size before anything is extracted, then
unpacked with no path leaving the folder and every byte counted. A refused upload leaves
nothing; a volume that replaces the scene's removes the uploads before it. Paths on the server
are accepted only under the folders the operator allowed (`--allow-root`), so a browser user
cannot read arbitrary files of the server.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import zipfile
import zlib
from pathlib import Path

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MAX_ZIP_MEMBERS = 4000      # a CT series has a few thousand slices at most; 9,000 tiny members took minutes
QUOTA_FACTOR = 3            # default quota: the upload, the job's exported copy and its results
UPLOAD_KINDS = ("upload", "unzipped")
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

    def __init__(self, maxUploadBytes: int, allowedRoots: list[str | Path] | None = None,
                 maxTotalBytes: int | None = None):
        self.maxUploadBytes = int(maxUploadBytes)
        self.maxTotalBytes = int(maxTotalBytes or QUOTA_FACTOR * self.maxUploadBytes)
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

    def usedBytes(self) -> int:
        """Bytes in the private folder now (uploads, unpacked series, jobs' copies and results)."""
        total = 0
        for folder, _, names in os.walk(self.root):
            for name in names:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    pass
        return total

    def checkRoom(self, incoming: int, what: str = "The upload") -> None:
        if incoming > self.maxUploadBytes:
            raise UploadRefused(f"{what} is {_size(incoming)}; this server accepts at most "
                                f"{_size(self.maxUploadBytes)} (--max-upload-mb).")
        used = self.usedBytes()
        if used + incoming > self.maxTotalBytes:
            raise UploadRefused(f"{what} ({_size(incoming)}) does not fit: this server's private folder "
                                f"holds {_size(used)} of its {_size(self.maxTotalBytes)} (--max-disk-mb). "
                                "Finish or cancel the running job, then try again.")

    def receiveUpload(self, files: list[dict]) -> list[Path]:
        """Write browser files ({name, content}) into a new folder; unpack zips. The size each
        file declares is ignored: what counts is the bytes that arrived."""
        contents = [_content(item) for item in files]
        self.checkRoom(sum(len(content) for content in contents))
        folder = self.newFolder("upload")
        try:
            written = []
            for item, content in zip(files, contents):
                name = Path(str(item.get("name") or "upload")).name   # never a path from the browser
                if not volumeSuffix(name):
                    raise UploadRefused(f"'{name}' is not a supported image file (NRRD, NIfTI, MHA, "
                                        "PNG/JPG/BMP/TIFF, DICOM files or a .zip of a DICOM series).")
                path = folder / name
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(content)
                written.append(path)
            return self._expandZips(written, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)   # a refused upload leaves nothing
            raise

    def releaseEarlier(self, keep: list[str | Path]) -> list[Path]:
        """Remove every upload folder that holds none of `keep` (the volume now in the scene):
        patient data the app no longer shows does not stay on disk until it exits."""
        keep = [Path(p).resolve() for p in keep]
        removed = []
        for folder in self.root.iterdir():
            if folder.name.split("-", 1)[0] in UPLOAD_KINDS and not any(folder in p.parents for p in keep):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        return removed

    def discard(self, paths: list[str | Path]) -> None:
        """Remove the upload folders holding `paths` (an upload no volume could be read from)."""
        for path in paths:
            path = Path(path).resolve()
            for folder in list(self.root.iterdir()):
                if folder.name.split("-", 1)[0] in UPLOAD_KINDS and folder in path.parents:
                    shutil.rmtree(folder, ignore_errors=True)

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
        except (zipfile.BadZipFile, OSError) as exc:
            raise UploadRefused(f"'{path.name}' is not a readable zip file ({exc}).") from exc
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_MEMBERS:
                raise UploadRefused(f"'{path.name}' holds {len(members)} files; a series is accepted with at most "
                                    f"{MAX_ZIP_MEMBERS}.")
            unpacked = sum(m.file_size for m in members)
            if unpacked > self.maxUploadBytes:
                raise UploadRefused(f"'{path.name}' unpacks to {_size(unpacked)}; this server accepts "
                                    f"at most {_size(self.maxUploadBytes)} (--max-upload-mb).")
            self.checkRoom(unpacked, f"'{path.name}' unpacked")
            out, budget = [], unpacked
            for index, member in enumerate(members):
                # Flatten: no member name is used as a path, so nothing can leave the folder.
                destination = target / f"{index:05d}-{Path(member.filename).name}"
                try:
                    with archive.open(member) as source, open(destination, "xb") as sink:
                        budget -= _copyAtMost(source, sink, budget, path.name)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                    # a damaged, encrypted or lying member (zipfile stops at the declared size: CRC)
                    raise UploadRefused(f"'{path.name}' could not be unpacked ({exc}).") from exc
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


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"


def _copyAtMost(source, sink, budget: int, name: str) -> int:
    """Copy, refusing a member that yields more than the archive declared in all (its sizes
    are the archive's own word, like a browser's)."""
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > budget:
            raise UploadRefused(f"'{name}' unpacks to more than it declares; refused.")
        sink.write(chunk)
    return copied


class UploadCollector:
    """The files of one browser upload as its chunks arrive (lists of whole files, then an empty
    list at the end), counted by the bytes received. Past the limit the upload is refused and
    the rest of it dropped as it arrives, so it is never held in full."""

    def __init__(self, maxBytes: int):
        self.maxBytes = int(maxBytes)
        self._files: list[dict] = []
        self._received = 0
        self._refused = False

    def add(self, files: list[dict]) -> str | None:
        """Keep a chunk; returns the message for the user the moment the upload is refused."""
        if self._refused:
            return None
        self._received += sum(len(_content(item)) for item in files)
        if self._received > self.maxBytes:
            self._files, self._refused = [], True
            return f"The upload is over this server's limit of {_size(self.maxBytes)} (--max-upload-mb)."
        self._files.extend(files)
        return None

    def finish(self) -> list[dict]:
        """The files of the upload that just ended (none when it was refused); ready for the next."""
        files = [] if self._refused else self._files
        self._files, self._received, self._refused = [], 0, False
        return files


def _content(item: dict) -> bytes:
    content = item.get("content") or b""
    if isinstance(content, list):
        content = b"".join(content)
    return bytes(content)

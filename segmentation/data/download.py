"""Download the public Montgomery County archive from the U.S. National Library of Medicine.

Resumable: bytes go to ``<archive>.part``; a later call asks the server for the rest with an HTTP
``Range`` request (a server that ignores it is detected and the download restarts from zero). When
complete, the SHA-256 digest is checked against ``sha256`` (when given) before the file is renamed
to its final name; a mismatch deletes the partial file, since resuming a corrupt file cannot fix it.
The digest is always written beside the archive as ``<archive>.sha256``.

Montgomery County set: Jaeger S. et al., "Two public chest X-ray datasets for computer-aided
screening of pulmonary diseases", Quant Imaging Med Surg 4(6):475-477, 2014.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from runtime.io import atomic_write_text
from runtime.logging import progress
from segmentation.data.io import DataError

MONTGOMERY_URL = (
    "https://data.lhncbc.nlm.nih.gov/public/Tuberculosis-Chest-X-ray-Datasets/Montgomery-County-CXR-Set/"
    "MontgomerySet.zip"
)
"""The NLM public archive (about 600 MB).

Older mirror: https://openi.nlm.nih.gov/imgs/collections/NLM-MontgomeryCXRSet.zip"""

MONTGOMERY_SHA256: str | None = None
"""No checksum is published by NLM and none could be verified when this was written; pass ``sha256``
(``--sha256``) to check one. The digest of what was downloaded is written to ``<archive>.sha256``."""

CHUNK = 1 << 20


class DownloadError(DataError):
    """A download failed or its checksum did not match; the message says what to do."""


def sha256_of(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, path: str | os.PathLike, *, sha256: str | None = None, timeout: float = 60.0,
                  chunk_size: int = CHUNK, show_progress: bool = True) -> Path:
    """Download ``url`` to ``path``, resuming ``<path>.part`` and verifying ``sha256``.

    Args:
        url: http(s) URL.
        path: final file; if it exists and matches ``sha256`` (or no checksum is given) nothing is fetched.
        sha256: expected hex digest, or None to skip the check (the digest is still recorded).
        timeout: socket timeout in seconds.
        chunk_size: bytes per read.
        show_progress: show a progress bar.

    Returns:
        ``path``.

    Raises:
        DownloadError: on a network error or a short transfer (the partial file is kept: call again to
            resume), or a checksum mismatch (the partial file is removed: call again to start over).
    """
    path = Path(path)
    expected = sha256.lower().strip() if sha256 else None
    if path.is_file():
        if expected is None or sha256_of(path) == expected:
            return path
        raise DownloadError(f"{path}: exists but its SHA-256 is not {expected}; delete it and download again")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "cxr-transfer"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URL by design
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to fetch: the partial file is complete
            return _finish(part, path, expected)
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; check the URL (--url) or try again later") from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"{url}: cannot connect ({err}); check the network or the URL (--url)") from err
    with response:
        status = getattr(response, "status", 200)
        total = None
        if status == 206:
            match = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != have:
                raise DownloadError(f"{url}: the server resumed at an unexpected offset "
                                    f"({response.headers.get('Content-Range')!r}); delete {part} and try again")
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
        else:  # 200: the server ignored the range, start over
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            mode = "wb"
        bar = progress(total=total, initial=have, desc=f"download {path.name}", enabled=show_progress)
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = response.read(chunk_size)
                    except (OSError, http.client.HTTPException) as err:
                        raise DownloadError(
                            f"{url}: transfer interrupted ({err!r}); run again to resume from {part}"
                        ) from err
                    if not block:
                        break
                    f.write(block)
                    if hasattr(bar, "update"):
                        bar.update(len(block))
        finally:
            if hasattr(bar, "close"):
                bar.close()
    size = part.stat().st_size
    if total is not None and size < total:
        raise DownloadError(f"{url}: transfer interrupted at {size} of {total} bytes; run again to resume from {part}")
    return _finish(part, path, expected)


def _finish(part: Path, path: Path, expected: str | None) -> Path:
    digest = sha256_of(part)
    if expected is not None and digest != expected:
        part.unlink()
        raise DownloadError(f"{path}: SHA-256 mismatch (expected {expected}, got {digest}); the partial file was "
                            "removed: run again to download from scratch, or check --sha256")
    os.replace(part, path)
    atomic_write_text(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    return path


def extract_zip(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a zip archive into ``dest`` safely (no member may escape ``dest``), via a temporary folder.

    Raises:
        DataError: for a corrupt archive or a member path outside ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{archive.name}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            root = tmp.resolve()
            for member in zf.namelist():
                target = (tmp / member).resolve()
                if target != root and root not in target.parents:
                    raise DataError(f"{archive}: member {member!r} would be written outside {dest}; the archive is "
                                    "unsafe, do not use it")
            zf.extractall(tmp)
        for child in tmp.iterdir():
            final = dest / child.name
            if final.exists():
                shutil.rmtree(final) if final.is_dir() else final.unlink()
            os.replace(child, final)
    except zipfile.BadZipFile as err:
        raise DataError(f"{archive}: corrupt zip archive ({err}); delete it and download again") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def download_montgomery(dest: str | os.PathLike, url: str = MONTGOMERY_URL, sha256: str | None = MONTGOMERY_SHA256,
                        *, extract: bool = True, timeout: float = 60.0, show_progress: bool = True) -> Path:
    """Download (resuming) and extract the NLM Montgomery County archive into ``dest``.

    Args:
        dest: folder for the archive and its extracted content.
        url: archive URL (default: the NLM public archive).
        sha256: expected SHA-256 of the archive, or None (the digest is then only recorded).
        extract: unzip the archive into ``dest``.
        timeout: socket timeout in seconds.
        show_progress: show a progress bar.

    Returns:
        ``dest`` (pass it as ``root`` to :func:`segmentation.data.prepare.prepare_montgomery`).

    Raises:
        DownloadError: see :func:`download_file`.
    """
    dest = Path(dest)
    name = Path(urllib.parse.urlparse(url).path).name or "MontgomerySet.zip"
    archive = download_file(url, dest / name, sha256=sha256, timeout=timeout, show_progress=show_progress)
    if extract:
        extract_zip(archive, dest)
    return dest

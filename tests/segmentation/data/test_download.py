"""Resumable, checksummed download, against a local HTTP server on 127.0.0.1 (tests never touch the internet)."""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from segmentation.data.download import DownloadError, download_file, download_montgomery, sha256_of


class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ignore_range = False
        self.cut_after: int | None = None  # close the connection after this many body bytes
        self.requests: list[str | None] = []  # the Range header of every GET


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            data = state.files.get(self.path)
            header = self.headers.get("Range")
            state.requests.append(header)
            if data is None:
                self.send_error(404)
                return
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", header or "")
            if match and not state.ignore_range:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after is not None:
                body = body[: state.cut_after]
                self.close_connection = True
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, _State]]:
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_and_checksum(server: tuple[str, _State], tmp_path: Path) -> None:
    url, state = server
    state.files["/a.zip"] = PAYLOAD
    path = download_file(f"{url}/a.zip", tmp_path / "a.zip", sha256=DIGEST, chunk_size=65536, show_progress=False)
    assert path.read_bytes() == PAYLOAD and sha256_of(path) == DIGEST
    assert (tmp_path / "a.zip.sha256").read_text().split()[0] == DIGEST and not (tmp_path / "a.zip.part").exists()
    download_file(f"{url}/a.zip", tmp_path / "a.zip", sha256=DIGEST, show_progress=False)
    assert state.requests == [None]  # already complete and verified: nothing fetched again


def test_interrupted_download_resumes_with_range(server: tuple[str, _State], tmp_path: Path) -> None:
    url, state = server
    state.files["/a.zip"] = PAYLOAD
    state.cut_after = 100_000
    with pytest.raises(DownloadError, match=r"interrupted.*run again to resume from .*a\.zip\.part"):
        download_file(f"{url}/a.zip", tmp_path / "a.zip", sha256=DIGEST, chunk_size=8192, show_progress=False)
    assert (tmp_path / "a.zip.part").stat().st_size == 100_000 and not (tmp_path / "a.zip").exists()
    state.cut_after = None
    path = download_file(f"{url}/a.zip", tmp_path / "a.zip", sha256=DIGEST, show_progress=False)
    assert state.requests == [None, "bytes=100000-"] and path.read_bytes() == PAYLOAD


def test_complete_partial_file_gets_416_and_is_verified(server: tuple[str, _State], tmp_path: Path) -> None:
    url, state = server
    state.files["/a.zip"] = PAYLOAD
    (tmp_path / "a.zip.part").write_bytes(PAYLOAD)
    path = download_file(f"{url}/a.zip", tmp_path / "a.zip", sha256=DIGEST, show_progress=False)
    assert state.requests == [f"bytes={len(PAYLOAD)}-"] and path.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server: tuple[str, _State], tmp_path: Path) -> None:
    url, state = server
    state.files["/a.zip"] = PAYLOAD
    state.ignore_range = True
    (tmp_path / "a.zip.part").write_bytes(PAYLOAD[:5000])
    path = download_file(f"{url}/a.zip", tmp_path / "a.zip", sha256=DIGEST, show_progress=False)
    assert state.requests == ["bytes=5000-"] and path.read_bytes() == PAYLOAD  # not the first 5000 bytes twice


def test_checksum_mismatch_removes_partial(server: tuple[str, _State], tmp_path: Path) -> None:
    url, state = server
    state.files["/a.zip"] = PAYLOAD
    (tmp_path / "a.zip.part").write_bytes(b"X" * 1000)  # a corrupt start, resumed from
    with pytest.raises(DownloadError, match=rf"a\.zip: SHA-256 mismatch \(expected {DIGEST}, got [0-9a-f]{{64}}\)"
                                            r".*run again to download from scratch"):
        download_file(f"{url}/a.zip", tmp_path / "a.zip", sha256=DIGEST, show_progress=False)
    assert not (tmp_path / "a.zip.part").exists() and not (tmp_path / "a.zip").exists()
    path = download_file(f"{url}/a.zip", tmp_path / "a.zip", sha256=DIGEST, show_progress=False)
    assert path.read_bytes() == PAYLOAD


def test_http_error_message(server: tuple[str, _State], tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(DownloadError, match=r"missing\.zip: HTTP 404 .*check the URL \(--url\)"):
        download_file(f"{url}/missing.zip", tmp_path / "m.zip", show_progress=False)


def nlm_archive() -> bytes:
    """A tiny MontgomerySet.zip in the NLM layout (two 1/20-scale images, 245x201 portrait)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for ident in ("MCUCXR_0001_0", "MCUCXR_0002_1"):
            image = np.full((245, 201), 1500, dtype=np.uint16)
            left = np.zeros((245, 201), dtype=np.uint8)
            right = np.zeros((245, 201), dtype=np.uint8)
            right[60:180, 25:80] = 255
            left[60:180, 120:175] = 255
            for name, array in ((f"CXR_png/{ident}.png", image), (f"ManualMask/leftMask/{ident}.png", left),
                                (f"ManualMask/rightMask/{ident}.png", right)):
                png = io.BytesIO()
                Image.fromarray(array).save(png, format="PNG")
                zf.writestr(f"MontgomerySet/{name}", png.getvalue())
    return buffer.getvalue()


def test_download_montgomery_extracts_nlm_layout(server: tuple[str, _State], tmp_path: Path) -> None:
    url, state = server
    archive = nlm_archive()
    state.files["/MontgomerySet.zip"] = archive
    dest = download_montgomery(tmp_path / "dl", url=f"{url}/MontgomerySet.zip",
                               sha256=hashlib.sha256(archive).hexdigest(), show_progress=False)
    assert (dest / "MontgomerySet/CXR_png/MCUCXR_0002_1.png").is_file()
    assert (dest / "MontgomerySet/ManualMask/leftMask/MCUCXR_0001_0.png").is_file()
    assert not list(dest.glob(".*"))  # no extraction leftovers

"""mgr.download against a local HTTP server on 127.0.0.1: good checksum,
bad checksum, and a connection dropped half-way (resumed with a Range request)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import mgr_in_process
from mgr import MGRError
from mgr import remote
from mgr.data import archives as dl


class ArchiveServer:
    """Serves `files` (name -> bytes); honours Range; can drop the first response half-way."""

    def __init__(self, files: dict[str, bytes], drop_first: bool = False):
        self.files, self.drop_first, self.requests = files, drop_first, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.drop_first:
                    server.drop_first = False
                    self.wfile.write(body[start : start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def fma_metadata_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("fma_metadata/tracks.csv", ",track\n,genre_top\ntrack_id,\n2,Hip-Hop\n" * 2000)
        z.writestr("fma_metadata/README.txt", "metadata")
    return buf.getvalue()


def gtzan_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = b"\x2esnd" + bytes(range(256)) * 400
        info = tarfile.TarInfo("genres/blues/blues.00000.au")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def archives(monkeypatch):
    """The real archive table, pointed at local bytes with their true checksums."""
    files = {"fma_metadata.zip": fma_metadata_zip(), "genres.tar.gz": gtzan_tar()}
    for name, archive in list(dl.ARCHIVES.items()):
        if archive.filename in files:
            digest = hashlib.sha1(files[archive.filename]).hexdigest()
            monkeypatch.setitem(dl.ARCHIVES, name, dl.Archive(archive.url, f"sha1:{digest}", archive.extracts_to))
    monkeypatch.setattr(remote.time, "sleep", lambda s: None)
    return files


def test_good_checksum_extracts_atomically(archives, tmp_path):
    server = ArchiveServer(archives)
    try:
        [folder] = dl.download("gtzan", tmp_path / "gtzan", mirror=server.url)
        assert folder == (tmp_path / "gtzan" / "genres").resolve()
        assert (folder / "blues" / "blues.00000.au").stat().st_size == 4 + 256 * 400
        assert sorted(p.name for p in (tmp_path / "gtzan").iterdir()) == [".downloads", "genres"]
        assert not list((tmp_path / "gtzan" / ".downloads").iterdir())  # archive removed once extracted
        # Done once: a second run fetches nothing.
        dl.download("gtzan", tmp_path / "gtzan", mirror=server.url)
        assert len(server.requests) == 1
    finally:
        server.close()


def test_bad_checksum_is_refused_and_deleted(archives, tmp_path, monkeypatch):
    monkeypatch.setitem(dl.ARCHIVES, "fma_metadata", dl.Archive(dl.FMA + "fma_metadata.zip", "sha1:" + "0" * 40, "fma_metadata"))
    server = ArchiveServer(archives)
    try:
        with pytest.raises(MGRError, match="does not match its published sha1 checksum"):
            dl.download("fma_metadata", tmp_path, mirror=server.url)
        assert not (tmp_path / "fma_metadata").exists()
        assert not list((tmp_path / ".downloads").iterdir())
    finally:
        server.close()


def test_dropped_connection_resumes_with_range(archives, tmp_path):
    server = ArchiveServer(archives, drop_first=True)
    try:
        dl.download("fma_metadata", tmp_path, mirror=server.url)
    finally:
        server.close()
    size = len(archives["fma_metadata.zip"])
    assert server.requests[0] == ("fma_metadata.zip", None)
    assert server.requests[1] == ("fma_metadata.zip", f"bytes={size // 2}-")
    assert (tmp_path / "fma_metadata" / "tracks.csv").read_text().startswith(",track\n")


def test_interrupted_download_resumes_on_the_next_run(archives, tmp_path):
    body = archives["fma_metadata.zip"]
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads" / "fma_metadata.zip.part").write_bytes(body[:1000])  # a killed earlier run
    server = ArchiveServer(archives)
    try:
        dl.download("fma_metadata", tmp_path, mirror=server.url)
    finally:
        server.close()
    assert server.requests == [("fma_metadata.zip", "bytes=1000-")]
    assert (tmp_path / "fma_metadata" / "README.txt").read_text() == "metadata"


def _download(*overrides: str, cwd) -> subprocess.CompletedProcess:
    """python -m mgr.download in this process: its Hydra main, output and exit code (the CLI of
    every entry point is the same @task wrapper, run in a new process by tests/test_train.py)."""
    return mgr_in_process("download", *overrides, cwd=cwd, data_dir=cwd / "data", check=False)


def test_command_line_reports_a_bad_checksum_in_one_line(tmp_path):
    # The real table: these local bytes cannot match FMA's published checksum.
    server = ArchiveServer({"fma_metadata.zip": fma_metadata_zip()})
    try:
        proc = _download("dataset=fma_metadata", f"root={tmp_path}", f"mirror={server.url}", cwd=tmp_path)
    finally:
        server.close()
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("mgr: error: fma_metadata.zip does not match its published sha1")
    assert "Traceback" not in proc.stderr


def test_command_line_errors_are_one_sentence(tmp_path):
    """A Hydra entry point like mgr.train: a missing or unknown value is one `mgr: error:` line."""
    missing = _download("dataset=fma_small", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip() == ("mgr: error: root is missing; run python -m mgr.download "
                                      f"dataset={'|'.join(dl.DATASETS)} root=PATH [mirror=URL] [keep_archives=true].")
    unknown = _download("dataset=fma_tiny", f"root={tmp_path}", cwd=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().startswith("mgr: error: Unknown dataset='fma_tiny'; choose one of gtzan, ")

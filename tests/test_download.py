"""mgr.download against a local HTTP server on 127.0.0.1: good checksum, bad checksum, a connection
dropped half-way (resumed with a Range request); MTG-Jamendo's files and tars and MagnaTagATune's split
zip, fabricated in miniature and read back by the real sources."""

from __future__ import annotations

import hashlib
import io
import re
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

    def __enter__(self) -> "ArchiveServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
    for name, (archive, *_) in list(dl.PARTS.items()):
        if isinstance(archive, dl.Archive) and archive.filename in files:
            digest = hashlib.sha1(files[archive.filename]).hexdigest()
            monkeypatch.setitem(dl.PARTS, name, (dl.Archive(archive.url, f"sha1:{digest}", archive.extracts_to),))
    monkeypatch.setattr(remote.time, "sleep", lambda s: None)
    return files


def test_good_checksum_extracts_atomically(archives, tmp_path):
    with ArchiveServer(archives) as server:
        [folder] = dl.download("gtzan", tmp_path / "gtzan", mirror=server.url)
        assert folder == (tmp_path / "gtzan" / "genres").resolve()
        assert (folder / "blues" / "blues.00000.au").stat().st_size == 4 + 256 * 400
        assert sorted(p.name for p in (tmp_path / "gtzan").iterdir()) == [".downloads", "genres"]
        assert not list((tmp_path / "gtzan" / ".downloads").iterdir())  # archive removed once extracted
        # Done once: a second run fetches nothing.
        dl.download("gtzan", tmp_path / "gtzan", mirror=server.url)
        assert len(server.requests) == 1


def test_bad_checksum_is_refused_and_deleted(archives, tmp_path, monkeypatch):
    monkeypatch.setitem(dl.PARTS, "fma_metadata", (dl.Archive(dl.FMA + "fma_metadata.zip", "sha1:" + "0" * 40, "fma_metadata"),))
    with ArchiveServer(archives) as server:
        with pytest.raises(MGRError, match="does not match its published sha1 checksum"):
            dl.download("fma_metadata", tmp_path, mirror=server.url)
        assert not (tmp_path / "fma_metadata").exists()
        assert not list((tmp_path / ".downloads").iterdir())


def test_dropped_connection_resumes_with_range(archives, tmp_path):
    with ArchiveServer(archives, drop_first=True) as server:
        dl.download("fma_metadata", tmp_path, mirror=server.url)
    size = len(archives["fma_metadata.zip"])
    assert server.requests[0] == ("fma_metadata.zip", None)
    assert server.requests[1] == ("fma_metadata.zip", f"bytes={size // 2}-")
    assert (tmp_path / "fma_metadata" / "tracks.csv").read_text().startswith(",track\n")


def test_interrupted_download_resumes_on_the_next_run(archives, tmp_path):
    body = archives["fma_metadata.zip"]
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads" / "fma_metadata.zip.part").write_bytes(body[:1000])  # a killed earlier run
    with ArchiveServer(archives) as server:
        dl.download("fma_metadata", tmp_path, mirror=server.url)
    assert server.requests == [("fma_metadata.zip", "bytes=1000-")]
    assert (tmp_path / "fma_metadata" / "README.txt").read_text() == "metadata"


def _download(*overrides: str, cwd) -> subprocess.CompletedProcess:
    """python -m mgr.download in this process: its Hydra main, output and exit code (the CLI of
    every entry point is the same @task wrapper, run in a new process by tests/test_train.py)."""
    return mgr_in_process("download", *overrides, cwd=cwd, data_dir=cwd / "data", check=False)


def test_command_line_reports_a_bad_checksum_in_one_line(tmp_path):
    # The real table: these local bytes cannot match FMA's published checksum.
    with ArchiveServer({"fma_metadata.zip": fma_metadata_zip()}) as server:
        proc = _download("dataset=fma_metadata", f"root={tmp_path}", f"mirror={server.url}", cwd=tmp_path)
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


# --- MTG-Jamendo: files pinned by git blob id, tars checked by a fetched sha256 list --------------

def git_blob_id(body: bytes) -> str:
    """What `git hash-object` prints for a file: the sha1 of `blob <size>\\0` and the bytes."""
    return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()


def mp3_tar(folder: str, names: list[str]) -> bytes:
    """A tar of the repository's kind: one folder NN/ of mp3 files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(folder)
        info.type = tarfile.DIRTYPE
        t.addfile(info)
        for name in names:
            data = b"ID3" + name.encode() * 50
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


JAMENDO_HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\n"
JAMENDO_SIDES = {"train": [("100", "00/100.mp3", "genre---rock"), ("200", "00/200.mp3", "genre---pop")],
                 "validation": [("101", "01/101.mp3", "genre---rock")],
                 "test": [("201", "01/201.mp3", "genre---pop")]}
AUDIO_LIST = "data/download/raw_30s_audio_sha256_tars.txt"
LOW_LIST = "data/download/raw_30s_audio-low_sha256_tars.txt"


def jamendo_split_file(side: str) -> bytes:
    rows = [f"track_{int(i):07d}\tartist_{i}\talbum_{i}\t{path}\t30.0\t{tag}\n" for i, path, tag in JAMENDO_SIDES[side]]
    return (JAMENDO_HEADER + "".join(rows)).encode()


@pytest.fixture
def jamendo(monkeypatch, tmp_path):
    """A miniature MTG-Jamendo as the mirror would serve it (split-0's genre files, two tars of each
    quality and their sha256 lists) and mgr's parts of it, read from a manifest of their git blob ids
    exactly as the shipped one is."""
    files = {f"data/splits/split-0/autotagging_genre-{side}.tsv": jamendo_split_file(side) for side in JAMENDO_SIDES}
    files["raw_30s_audio-00.tar"] = mp3_tar("00", ["100.mp3", "200.mp3"])
    files["raw_30s_audio-01.tar"] = mp3_tar("01", ["101.mp3", "201.mp3"])
    files["raw_30s_audio-low-00.tar"] = mp3_tar("00", ["100.low.mp3", "200.low.mp3"])
    files["raw_30s_audio-low-01.tar"] = mp3_tar("01", ["101.low.mp3", "201.low.mp3"])
    for listing, kind in ((AUDIO_LIST, "audio"), (LOW_LIST, "audio-low")):
        files[listing] = "".join(f"{hashlib.sha256(files[f'raw_30s_{kind}-{n}.tar']).hexdigest()} raw_30s_{kind}-{n}.tar\n"
                                 for n in ("00", "01")).encode()
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("# a comment\n" + "".join(f"{git_blob_id(body)} {name}\n" for name, body in files.items()
                                                  if name.startswith("data/")))
    monkeypatch.setattr(dl, "PARTS", {**dl.PARTS, **dl.mtg_jamendo_parts(dl.read_manifest(manifest))})
    monkeypatch.setattr(remote.time, "sleep", lambda s: None)
    return files


def jamendo_source(root, **options):
    from mgr.data.sources.mtg_jamendo import MTGJamendoSource

    return MTGJamendoSource(str(root), **options)


def test_mtg_jamendo_is_laid_out_as_its_source_reads_it_and_a_second_run_fetches_nothing(jamendo, tmp_path):
    root = tmp_path / "mtg-jamendo"
    with ArchiveServer(jamendo) as server:
        dl.download("mtg_jamendo", root, mirror=server.url)
        fetched = len(server.requests)
        dl.download("mtg_jamendo", root, mirror=server.url)
    assert fetched == 3 + 1 + 2  # the split files, the sha256 list, the tars
    assert len(server.requests) == fetched
    listed = jamendo_source(root).list()
    assert [p.rsplit("/", 2)[1:] for p in listed.files] == [["00", "100.mp3"], ["00", "200.mp3"], ["01", "101.mp3"],
                                                            ["01", "201.mp3"]]
    assert listed.known_bad == {} and listed.class_names == ["pop", "rock"]
    assert sorted(p.name for p in (root / "audio").iterdir()) == ["00", "01"]  # no temporary folder left
    assert not list((root / ".downloads").iterdir())  # nor any download


def test_mtg_jamendo_low_is_read_with_low_quality(jamendo, tmp_path):
    with ArchiveServer(jamendo) as server:
        dl.download("mtg_jamendo_low", tmp_path, mirror=server.url)
    listed = jamendo_source(tmp_path, low_quality=True).list()
    assert listed.known_bad == {} and listed.files[0].endswith("00/100.low.mp3")


def test_a_tar_that_does_not_match_its_listed_sha256_is_refused(jamendo, tmp_path, monkeypatch):
    jamendo["raw_30s_audio-01.tar"] = mp3_tar("01", ["101.mp3", "999.mp3"])  # not the listed bytes
    with ArchiveServer(jamendo) as server:
        with pytest.raises(MGRError, match=r"raw_30s_audio-01.tar does not match its published sha256 checksum"):
            dl.download("mtg_jamendo", tmp_path, mirror=server.url)
    assert [p.name for p in (tmp_path / "audio").iterdir()] == ["00"]  # the good tar's folder, nothing else
    assert not list((tmp_path / ".downloads").glob("*.tar"))


def test_a_metadata_file_that_does_not_match_its_git_blob_id_is_refused(jamendo, tmp_path):
    jamendo["data/splits/split-0/autotagging_genre-test.tsv"] += b"track_0000999\tx\ty\t09/999.mp3\t1\tgenre---pop\n"
    with ArchiveServer(jamendo) as server:
        with pytest.raises(MGRError, match=r"autotagging_genre-test.tsv does not match its published git-blob checksum"):
            dl.download("mtg_jamendo_metadata", tmp_path, mirror=server.url)
    assert not (tmp_path / "data/splits/split-0/autotagging_genre-test.tsv").exists()


def test_the_low_quality_audio_is_refused_beside_the_full_before_any_download(jamendo, tmp_path):
    with ArchiveServer(jamendo) as server:
        dl.download("mtg_jamendo", tmp_path, mirror=server.url)
        before = len(server.requests)
        with pytest.raises(MGRError, match=r"holds MTG-Jamendo's full-quality audio \(00/100.mp3\) .* give the "
                                           r"low-quality audio a root= of its own\."):
            dl.download("mtg_jamendo_low", tmp_path, mirror=server.url)
    assert len(server.requests) == before


def test_the_shipped_manifest_lists_every_split_file_the_source_reads_and_both_tar_lists():
    from mgr.data.sources.mtg_jamendo import SIDES, SPLITS, SUBSETS

    lines = [line for line in dl.MTG_MANIFEST.read_text().splitlines() if not line.startswith("#")]
    assert all(re.fullmatch(r"[0-9a-f]{40} data/[\w./-]+", line) for line in lines)
    wanted = {f"data/splits/{split}/autotagging{suffix}-{side}.tsv"
              for split in SPLITS for suffix in SUBSETS.values() for side in SIDES}
    assert len(wanted) == 5 * 5 * 3
    assert set(dl.read_manifest(dl.MTG_MANIFEST)) == wanted | {AUDIO_LIST, LOW_LIST}
    assert {f.path for f in dl.PARTS["mtg_jamendo_metadata"]} == wanted
    assert all(f.url.startswith(dl.MTG_RAW) and dl.MTG_COMMIT in f.url for f in dl.PARTS["mtg_jamendo_metadata"])


def test_git_blob_checksums_are_what_git_hash_object_prints(tmp_path):
    file = tmp_path / "a.tsv"
    file.write_bytes(b"TRACK_ID\tARTIST_ID\n")
    expected = subprocess.run(["git", "hash-object", str(file)], capture_output=True, text=True, check=True).stdout.strip()
    remote.verify(file, f"git-blob:{expected}")  # passes, keeps the file
    with pytest.raises(MGRError, match="does not match its published git-blob checksum"):
        remote.verify(file, "git-blob:" + "0" * 40)


# --- MagnaTagATune: no published checksum, one zip in three byte parts ----------------------------

MTAT_CLIPS = {folder: f"{folder}/artist_{folder}-album-01-song_{folder}-0-29.mp3" for folder in "0123456789abcdef"}


def mtat_files() -> dict[str, bytes]:
    """annotations_final.csv (tab-separated, quoted, CRLF) and mp3.zip cut into three byte parts."""
    header = ["clip_id", "guitar", "piano", "mp3_path"]
    rows = [[str(i), str(i % 2), str(1 - i % 2), path] for i, path in enumerate(MTAT_CLIPS.values())]
    annotations = "".join("\t".join(f'"{v}"' for v in row) + "\r\n" for row in [header, *rows])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # stored: a damaged byte reaches a CRC-32
        for path in MTAT_CLIPS.values():
            z.writestr(path, b"ID3" + path.encode() * 40)
    whole = buf.getvalue()
    third = len(whole) // 3
    return {"annotations_final.csv": annotations.encode(), "mp3.zip.001": whole[:third],
            "mp3.zip.002": whole[third : 2 * third], "mp3.zip.003": whole[2 * third :]}


def test_mtat_is_joined_extracted_and_read_by_its_source(tmp_path, monkeypatch):
    from mgr.data.sources.mtat import MTATSource

    monkeypatch.setattr(remote.time, "sleep", lambda s: None)
    with ArchiveServer(mtat_files()) as server:
        dl.download("mtat", tmp_path, mirror=server.url)  # the real table: no checksum to fake
        dl.download("mtat", tmp_path, mirror=server.url)
    assert [name for name, _ in server.requests] == ["annotations_final.csv", "mp3.zip.001", "mp3.zip.002", "mp3.zip.003"]
    listed = MTATSource(str(tmp_path), top_k=2).list()
    assert listed.known_bad == {} and len(listed.files) == 16
    assert listed.files[0] == str((tmp_path / "mp3" / MTAT_CLIPS["0"]).resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".downloads", "annotations_final.csv", "mp3"]
    assert not list((tmp_path / ".downloads").iterdir())  # parts and joined zip gone


def test_a_damaged_mtat_part_is_one_sentence_and_the_parts_are_deleted(tmp_path):
    files = mtat_files()
    damaged = bytearray(files["mp3.zip.002"])
    at = damaged.index(b"ID3")  # inside a stored member's bytes: only its CRC-32 can tell
    damaged[at + 10] ^= 0xFF
    files["mp3.zip.002"] = bytes(damaged)
    with ArchiveServer(files) as server:
        proc = _download("dataset=mtat", f"root={tmp_path}", f"mirror={server.url}", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert re.fullmatch(r"mgr: error: mp3.zip, joined from mp3.zip.001, mp3.zip.002, mp3.zip.003, is damaged "
                        r"\(Bad CRC-32 for file '\w/[^']+'\); no checksum is published to tell which part, so all "
                        r"were deleted: run the command again to download them anew\.", proc.stderr.splitlines()[-1])
    assert not (tmp_path / "mp3").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".downloads"] == []
    assert not [p for p in (tmp_path / ".downloads").iterdir()]

"""engines.files.downloader and `annotator models download` against a real HTTP server on
127.0.0.1 (started here; nothing else is contacted)."""
from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engines.files import catalogue
from engines.files.catalogue import ModelEntry
from engines.files.downloader import DownloadError, download

DATA = os.urandom(300 * 1024 + 123)          # a few hundred KB, not a multiple of a chunk
SHA = hashlib.sha256(DATA).hexdigest()
MD5 = hashlib.md5(DATA).hexdigest()
CHUNK = 16 * 1024


class FileServer:
    """Serves DATA at /model.pth with Range support; can misbehave on purpose."""

    def __init__(self, data: bytes = DATA, *, drop_first: int = 0, ignore_range: bool = False,
                 status: int | None = None):
        self.data, self.drop_first, self.ignore_range, self.status = \
            data, drop_first, ignore_range, status
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll interval: shutdown() waits for it, and there are a dozen servers here.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/model.pth"

    @property
    def bytes_sent(self) -> int:
        return sum(r["sent"] for r in self.requests)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):   # keep pytest output clean
                pass

            def do_GET(self):
                record = {"range": self.headers.get("Range"), "sent": 0, "status": None}
                with server.lock:
                    index = len(server.requests)
                    server.requests.append(record)
                data = server.data
                if self.path != "/model.pth" or server.status:
                    record["status"] = server.status or 404
                    self.send_error(record["status"])
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", record["range"] or "")
                if match and not server.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        record["status"] = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    record["status"] = 206
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    record["status"] = 200
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if index < server.drop_first:
                    # Promise the whole body, send half, then hang up.
                    half = body[: len(body) // 2]
                    self.wfile.write(half)
                    self.wfile.flush()
                    record["sent"] = len(half)
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)
                record["sent"] = len(body)

        return Handler

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def fetch(server: FileServer, dest: Path, **kw) -> Path:
    kw.setdefault("chunk_size", CHUNK)
    kw.setdefault("backoff", 0)
    kw.setdefault("timeout", 5)
    return download(server.url, dest, **kw)


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def test_plain_download_checks_size_and_hash(tmp_path):
    seen = []
    dest = tmp_path / "sub" / "model.pth"
    with FileServer() as server:
        out = fetch(server, dest, expected_size=len(DATA), sha256=SHA, md5=MD5,
                    progress=lambda done, total: seen.append((done, total)))
    assert out == dest and dest.read_bytes() == DATA
    assert not part_of(dest).exists()
    assert seen[-1] == (len(DATA), len(DATA))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert [r["range"] for r in server.requests] == [None]


def test_resumes_from_existing_part_with_a_range_request(tmp_path):
    dest = tmp_path / "model.pth"
    have = 100 * 1024
    part_of(dest).write_bytes(DATA[:have])
    with FileServer() as server:
        fetch(server, dest, sha256=SHA)
    assert dest.read_bytes() == DATA
    assert [r["range"] for r in server.requests] == [f"bytes={have}-"]
    assert server.requests[0]["status"] == 206
    assert server.bytes_sent == len(DATA) - have


def test_a_complete_part_needs_no_new_bytes(tmp_path):
    dest = tmp_path / "model.pth"
    part_of(dest).write_bytes(DATA)
    with FileServer() as server:      # size unknown: the server answers 416 */N
        fetch(server, dest, sha256=SHA)
    assert dest.read_bytes() == DATA and server.bytes_sent == 0
    assert [r["status"] for r in server.requests] == [416]


def test_broken_connection_is_retried_and_resumed(tmp_path):
    dest = tmp_path / "model.pth"
    with FileServer(drop_first=2) as server:
        fetch(server, dest, expected_size=len(DATA), sha256=SHA, retries=3)
    assert dest.read_bytes() == DATA
    assert len(server.requests) == 3
    first, second, third = server.requests
    assert first["range"] is None and 0 < first["sent"] < len(DATA)
    assert second["range"] == f"bytes={first['sent']}-"
    assert third["range"] == f"bytes={first['sent'] + second['sent']}-"
    assert server.bytes_sent == len(DATA)        # nothing fetched twice


def test_retries_used_up_keep_the_part_for_a_later_resume(tmp_path):
    dest = tmp_path / "model.pth"
    with FileServer(drop_first=10) as server:
        with pytest.raises(DownloadError, match=r"model\.pth.*2 attempts.*kept"):
            fetch(server, dest, retries=1)
    assert not dest.exists()
    kept = part_of(dest).read_bytes()
    assert 0 < len(kept) < len(DATA) and DATA.startswith(kept)
    with FileServer() as server:                  # a later run finishes the job
        fetch(server, dest, sha256=SHA)
    assert dest.read_bytes() == DATA
    assert server.requests[0]["range"] == f"bytes={len(kept)}-"


def test_server_that_ignores_range_restarts_from_zero(tmp_path):
    dest = tmp_path / "model.pth"
    part_of(dest).write_bytes(b"\xff" * 50_000)   # would corrupt the file if appended to
    with FileServer(ignore_range=True) as server:
        fetch(server, dest, expected_size=len(DATA), sha256=SHA)
    assert dest.read_bytes() == DATA
    assert server.requests[0]["range"] == "bytes=50000-"
    assert server.requests[0]["status"] == 200 and server.bytes_sent == len(DATA)


def test_wrong_sha256_deletes_everything_and_names_both_hashes(tmp_path):
    dest = tmp_path / "model.pth"
    wrong = "0" * 64
    with FileServer() as server:
        with pytest.raises(DownloadError) as info:
            fetch(server, dest, sha256=wrong)
    message = str(info.value)
    assert "model.pth" in message and wrong in message and SHA in message
    assert not dest.exists() and not part_of(dest).exists()


def test_wrong_hash_leaves_an_existing_good_file_alone(tmp_path):
    dest = tmp_path / "model.pth"
    dest.write_bytes(b"the old, good file")
    with FileServer() as server:
        with pytest.raises(DownloadError):
            fetch(server, dest, md5="f" * 32)
    assert dest.read_bytes() == b"the old, good file" and not part_of(dest).exists()


def test_sha256_prefix(tmp_path):
    with FileServer() as server:
        fetch(server, tmp_path / "a.pth", sha256_prefix=SHA[:6].upper())
        wrong = format((int(SHA[:6], 16) + 1) % 16**6, "06x")
        with pytest.raises(DownloadError, match=f"starting with {wrong}"):
            fetch(server, tmp_path / "b.pth", sha256_prefix=wrong)
    assert (tmp_path / "a.pth").read_bytes() == DATA
    assert not (tmp_path / "b.pth").exists() and not part_of(tmp_path / "b.pth").exists()


def test_size_mismatch_is_caught_before_the_body_is_read(tmp_path):
    dest = tmp_path / "model.pth"
    with FileServer() as server:
        with pytest.raises(DownloadError, match=f"offers {len(DATA)} bytes, expected 1234"):
            fetch(server, dest, expected_size=1234)
    assert len(server.requests) == 1               # not retried: it cannot get better
    assert not dest.exists() and not part_of(dest).exists()


def test_http_404_fails_at_once_without_retrying(tmp_path):
    with FileServer(status=404) as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetch(server, tmp_path / "model.pth", retries=3)
    assert len(server.requests) == 1


def test_only_http_urls_are_accepted(tmp_path):
    source = tmp_path / "src.pth"
    source.write_bytes(DATA)
    with pytest.raises(DownloadError, match="only http"):
        download(source.as_uri(), tmp_path / "model.pth")


def test_entry_supplies_url_size_and_hashes(tmp_path):
    with FileServer() as server:
        good = ModelEntry(name="t", engine="sam", arch="vit_b", filename="t.pth",
                          url=server.url, size=len(DATA), sha256=SHA)
        download(good, tmp_path / "t.pth", chunk_size=CHUNK, backoff=0)
        bad = ModelEntry(name="u", engine="sam", arch="vit_b", filename="u.pth",
                         url=server.url, sha256=SHA[::-1])
        with pytest.raises(DownloadError, match="u.pth"):
            download(bad, tmp_path / "u.pth", chunk_size=CHUNK, backoff=0)
    assert (tmp_path / "t.pth").read_bytes() == DATA


# --- the command line, end to end -----------------------------------------------------------

def _entries(url: str) -> list[ModelEntry]:
    return [
        ModelEntry(name="tiny-test", engine="sam", arch="vit_b", filename="tiny.pth", url=url,
                   size=len(DATA), sha256=SHA, license="test", description="test file"),
        ModelEntry(name="bad-test", engine="sam", arch="vit_l", filename="bad.pth", url=url,
                   size=len(DATA), sha256="1" * 64, license="test", description="wrong hash"),
    ]


@pytest.fixture
def main(monkeypatch):
    """annotator.cli.main with only the models command registered, so this test does not
    depend on the other commands' modules (and their heavy imports)."""
    from annotator import cli
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("annotator.commands.models",))
    return cli.main


def test_cli_download_list_path_verify(tmp_path, monkeypatch, capsys, main):
    folder = str(tmp_path / "models")
    with FileServer() as server:
        monkeypatch.setattr(catalogue, "load_catalogue", lambda path=None: _entries(server.url))
        assert main(["models", "--models-dir", folder, "path", "tiny-test"]) == 1
        assert "annotator models download tiny-test" in capsys.readouterr().err

        assert main(["models", "--models-dir", folder, "download", "tiny-test"]) == 0
        out = capsys.readouterr()
        target = Path(folder) / "tiny.pth"
        assert target.read_bytes() == DATA and str(target) in out.out
        assert "tiny.pth" in out.err                       # the progress bar

        assert main(["models", "--models-dir", folder, "download", "tiny-test"]) == 0
        assert "already installed" in capsys.readouterr().out
        assert len(server.requests) == 1
        assert main(["models", "download", "tiny-test", "--force", "--models-dir", folder]) == 0
        assert len(server.requests) == 2 and target.read_bytes() == DATA
        capsys.readouterr()

        assert main(["models", "--models-dir", folder, "path", "tiny-test"]) == 0
        assert capsys.readouterr().out.strip() == str(target)
        assert main(["models", "--models-dir", folder, "list"]) == 0
        listing = capsys.readouterr().out
        assert re.search(r"tiny-test\s+sam\s+vit_b\s+\d+\s+yes", listing)
        assert re.search(r"bad-test\s+sam\s+vit_l\s+\d+\s+no", listing)
        assert main(["models", "--models-dir", folder, "verify"]) == 0
        assert "OK" in capsys.readouterr().out

        # The wrong hash: the CLI reports it (exit 2) and nothing is left behind.
        assert main(["models", "--models-dir", folder, "download", "bad-test"]) == 2
        err = capsys.readouterr().err
        assert "bad.pth" in err and "1" * 64 in err and SHA in err
        assert not (Path(folder) / "bad.pth").exists()
        assert not (Path(folder) / "bad.pth.part").exists()

    # A damaged file fails `verify` (exit 1) and names the problem.
    raw = bytearray(target.read_bytes())
    raw[1000] ^= 0xFF
    target.write_bytes(bytes(raw))
    assert main(["models", "--models-dir", folder, "verify", "tiny-test"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["models", "--models-dir", folder, "verify", "bad-test"]) == 1
    assert "MISSING" in capsys.readouterr().out

"""Resumable, verified checkpoint downloads with urllib (no extra dependency).

Only ever called when a user asks for a download (`annotator models download`, or the UI's
button); never at import time. The bytes go to `<dest>.part`; a broken connection resumes
from where it stopped with an HTTP Range request; the size and hashes are checked before
an atomic rename, so `dest` is either absent, the old file, or the verified new one.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from engines.files.catalogue import ModelEntry, Progress, check_digests
from engines.types import EngineError

USER_AGENT = "sam-annotator/0.1 (+urllib)"
# Statuses worth another try; any other HTTP error (404, 403 ...) will not fix itself.
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(EngineError):
    """A download that failed for good: HTTP error, wrong size or hash, retries used up."""


class _Retry(Exception):
    """One attempt ended early (broken connection, timeout, 5xx); the next one resumes."""


class _RunningDigest:
    """SHA-256 and MD5 of the .part file, updated as bytes are written, so a finished
    download needs no second read of a multi-GB file."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.count = 0

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.md5.update(data)
        self.count += len(data)

    def catch_up(self, part: Path, offset: int, chunk_size: int) -> None:
        """Make the digest cover exactly the first `offset` bytes of `part` (e.g. a .part
        left by an earlier run)."""
        if self.count == offset:
            return
        self.reset()
        with part.open("rb") as fh:
            while self.count < offset:
                chunk = fh.read(min(chunk_size, offset - self.count))
                if not chunk:
                    break
                self.update(chunk)


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _attempt(url: str, part: Path, digest: _RunningDigest, expected_size: int | None,
             progress: Progress | None, timeout: float, chunk_size: int) -> None:
    """Fetch the rest of the file into `part`. Returns when the server says it is complete;
    raises _Retry when the connection broke, DownloadError when it never can work."""
    name = part.name[: -len(".part")]
    offset = _size_of(part)
    if expected_size is not None and offset > expected_size:
        part.unlink()          # longer than the real file: not a prefix of it
        offset = 0
    digest.catch_up(part, offset, chunk_size)
    if expected_size is not None and offset == expected_size:
        return                 # an earlier run got every byte; only verification is left
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            match = _UNSATISFIED_RANGE.match(exc.headers.get("Content-Range", "") or "")
            if match and int(match.group(1)) == offset:
                return         # the .part already holds the whole file
            part.unlink(missing_ok=True)
            digest.reset()
            raise _Retry(f"the server cannot resume at byte {offset}; starting over")
        if exc.code in _RETRY_STATUS:
            raise _Retry(f"HTTP {exc.code} {exc.reason}")
        raise DownloadError(f"cannot download {name} from {url}: HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _Retry(f"cannot connect to {url}: {getattr(exc, 'reason', exc)}")

    with response:
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total: int | None = None
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "") or "")
            if not match or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                digest.reset()
                raise _Retry(f"the server resumed at the wrong byte (asked for {offset}); starting over")
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
        elif response.status == 200:
            if offset:         # the server ignored Range and sends everything again
                digest.reset()
            offset, mode = 0, "wb"
            total = length
        else:
            raise DownloadError(f"cannot download {name} from {url}: unexpected HTTP "
                                f"status {response.status}")
        if total is None and length is not None:
            total = offset + length
        if total is not None and expected_size is not None and total != expected_size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{name}: the server at {url} offers {total} bytes, expected "
                                f"{expected_size}; it is not the catalogued file")
        total = total if total is not None else expected_size
        done, received = offset, 0
        try:
            fh = part.open(mode)
        except OSError as exc:
            raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from exc
        with fh:
            if progress is not None:
                progress(done, total)
            while True:
                try:
                    chunk = response.read(chunk_size)
                except (http.client.HTTPException, OSError) as exc:
                    raise _Retry(f"connection broke after {done} bytes: {exc!r}")
                if not chunk:
                    break
                try:
                    fh.write(chunk)
                except OSError as exc:
                    raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from exc
                digest.update(chunk)
                done += len(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(done, total)
        # http.client returns b"" (no exception) when the peer closes early; count bytes.
        if length is not None and received < length:
            raise _Retry(f"connection closed after {done} of {total} bytes")


def download(entry_or_url: ModelEntry | str, dest: str | Path, *,
             expected_size: int | None = None, sha256: str | None = None,
             sha256_prefix: str | None = None, md5: str | None = None,
             progress: Progress | None = None, retries: int = 3, timeout: float = 30,
             chunk_size: int = 1 << 20, backoff: float = 1.0) -> Path:
    """Download to `dest`, resuming `<dest>.part` if present; return `dest`.

    For a ModelEntry the url, size and hashes come from the catalogue (keyword arguments
    given here win). A broken connection is retried `retries` times, each retry resuming;
    if they run out the .part is kept so a later call resumes. A wrong size or hash
    deletes the .part and raises DownloadError naming the file and both values.
    """
    if isinstance(entry_or_url, ModelEntry):
        entry = entry_or_url
        url = entry.url
        expected_size = entry.size if expected_size is None else expected_size
        sha256 = sha256 or entry.sha256
        sha256_prefix = sha256_prefix or entry.sha256_prefix
        md5 = md5 or entry.md5
    else:
        url = str(entry_or_url)
    if not url.startswith(("https://", "http://")):
        raise DownloadError(f"cannot download {url!r}: only http(s) addresses are supported")
    if retries < 0 or chunk_size <= 0 or timeout <= 0:
        raise ValueError("retries must be >= 0, chunk_size and timeout > 0")
    dest = Path(dest)
    if dest.is_dir():
        raise DownloadError(f"cannot download to {dest}: it is a folder")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the models folder {dest.parent}: "
                            f"{exc.strerror or exc}") from exc
    part = _part_path(dest)
    digest = _RunningDigest()
    failures = 0
    while True:
        try:
            _attempt(url, part, digest, expected_size, progress, timeout, chunk_size)
            break
        except _Retry as exc:
            failures += 1
            if failures > retries:
                kept = f"; the partial file {part} is kept, run again to resume" \
                    if part.exists() else ""
                raise DownloadError(f"downloading {dest.name} from {url} failed after "
                                    f"{failures} attempts: {exc}{kept}") from None
            time.sleep(backoff * failures)

    size = _size_of(part)
    if not part.exists() or size == 0:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{dest.name}: the server at {url} sent an empty file")
    digest.catch_up(part, size, chunk_size)   # no-op unless the file changed under us
    problems = check_digests(dest.name, size, digest.sha256.hexdigest(), digest.md5.hexdigest(),
                             expected_size=expected_size, expected_sha256=sha256,
                             expected_prefix=sha256_prefix, expected_md5=md5)
    if problems:
        part.unlink(missing_ok=True)
        raise DownloadError("; ".join(problems) + f" (downloaded from {url}; the bad file "
                            "was deleted)")
    os.replace(part, dest)     # atomic on one file system: dest is never half-written
    return dest

"""Downloading a weights file: resumable, checksum-verified, atomic.

The bytes go to ``<dst>.part`` (kept when the transfer is interrupted, and continued by the next
call: an HTTP ``Range`` request, or a seek for ``file://`` URLs and local paths), are checked
against the expected SHA-256 when one is known, and only then renamed to ``dst``. A file whose
checksum does not match is kept aside as ``<dst>.sha256-<digest>.rejected`` and the error names
both digests. When the URL cannot be reached the error names it and the command that fetches it
by hand.
"""

import hashlib
import io
import logging
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from typing import BinaryIO, Optional, Tuple

__all__ = [
    "WeightsDownloadError",
    "ChecksumMismatchError",
    "download",
    "sha256_of_file",
    "manual_command",
]

logger = logging.getLogger(__name__)
_CHUNK = 1 << 20


class WeightsDownloadError(RuntimeError):
    """A weights file could not be downloaded (names the URL and how to fetch it by hand)."""


class ChecksumMismatchError(WeightsDownloadError):
    """The downloaded bytes do not have the expected SHA-256.

    Attributes:
        expected, actual: hex digests. kept_at: where the rejected file was moved.
    """

    def __init__(self, url: str, expected: str, actual: str, kept_at: str):
        super().__init__(
            f"{url}: SHA-256 mismatch: expected {expected}, got {actual}; the file was kept "
            f"aside as {kept_at} (delete it, or check the source and the catalogue entry)"
        )
        self.expected, self.actual, self.kept_at = expected, actual, kept_at


def sha256_of_file(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def manual_command(url: str, dst: str) -> str:
    """The shell command that fetches ``url`` to ``dst`` by hand (resumable)."""
    return f"curl -L -C - --create-dirs -o '{dst}' '{url}'"


def _local_source(url: str) -> Optional[str]:
    """The local path of a ``file://`` URL or a plain path; None for other schemes."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return urllib.request.url2pathname(parsed.path)
    if parsed.scheme in ("", "local") or (len(parsed.scheme) == 1 and os.name == "nt"):
        return url
    return None


def _open(url: str, offset: int, timeout: float) -> Tuple[BinaryIO, Optional[int], bool]:
    """``(stream, total size or None, resumed)`` with the stream positioned at ``offset`` when
    ``resumed`` (else at 0)."""
    local = _local_source(url)
    if local is not None:
        size = os.path.getsize(local)
        stream = open(local, "rb")
        if 0 < offset <= size:
            stream.seek(offset)
            return stream, size, True
        return stream, size, False
    request = urllib.request.Request(url, headers={"User-Agent": "fx_d2-weights"})
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset > 0:  # the range starts at the end: the part is complete
            return io.BytesIO(b""), offset, True
        raise
    length = response.headers.get("Content-Length")
    resumed = offset > 0 and getattr(response, "status", 200) == 206
    total = int(length) + (offset if resumed else 0) if length is not None else None
    return response, total, resumed


def _progress(total: Optional[int], initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    # disable=None: a bar only on a terminal; logs and CI stay clean
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, disable=None if enabled else True, leave=False)  # fmt: skip


def download(
    url: str,
    dst: str,
    sha256: Optional[str] = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> str:
    """Fetch ``url`` to ``dst`` (resuming ``dst + ".part"`` if present) and verify it.

    Args:
        url: ``https://``, ``http://``, ``file://`` or a local path.
        dst: final path (its folder is created).
        sha256: expected hex digest (None: not checked; the computed one is logged).
        progress: show a progress bar on a terminal.

    Returns:
        ``dst``.

    Raises:
        WeightsDownloadError: unreachable URL or a transfer error (the partial file is kept for
            the next call; the message gives the manual command).
        ChecksumMismatchError: wrong digest (the file is kept aside, both digests named).
    """
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    part = dst + ".part"
    offset = os.path.getsize(part) if os.path.isfile(part) else 0
    try:
        stream, total, resumed = _open(url, offset, timeout)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise WeightsDownloadError(
            f"cannot download {url} ({type(err).__name__}: {getattr(err, 'reason', err)}). "
            f"Without network access, fetch it on another machine and put it at {dst}, e.g. "
            f"{manual_command(url, dst)}"
        ) from err
    if offset and not resumed:
        logger.info("%s: the source cannot resume; starting again", url)
        offset = 0
    elif offset:
        logger.info("%s: resuming at byte %d of %s", url, offset, total)
    try:
        with stream, open(part, "ab" if resumed else "wb") as out:
            with _progress(total, offset, os.path.basename(dst), progress) as bar:
                for block in iter(lambda: stream.read(_CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
    except (urllib.error.URLError, OSError) as err:
        raise WeightsDownloadError(
            f"download of {url} interrupted at byte {os.path.getsize(part)} ({err}); run the "
            f"same command again to resume, or {manual_command(url, part)} and rename it to {dst}"
        ) from err
    size = os.path.getsize(part)
    if total is not None and size != total:
        raise WeightsDownloadError(
            f"download of {url} incomplete: {size} of {total} bytes in {part}; run it again "
            "to resume"
        )
    actual = sha256_of_file(part)
    if sha256 and actual != sha256.lower():
        kept = f"{dst}.sha256-{actual[:16]}.rejected"
        shutil.move(part, kept)
        raise ChecksumMismatchError(url, sha256.lower(), actual, kept)
    if not sha256:
        logger.info("%s: no known SHA-256; the downloaded file's is %s", url, actual)
    os.replace(part, dst)
    return dst

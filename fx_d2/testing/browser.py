"""Open an HTML file in headless Chromium, for tests of the pages fx_d2 writes (the run report,
the prediction page).

Chromium is optional: ``make setup-browser`` installs Debian's ``chromium`` and
``chromium-driver``; ``FX_CHROMIUM`` names another binary. Tests call :func:`require_chromium`,
which skips with :data:`SKIP_REASON` when no browser is installed. The page is opened from its
file with name resolution disabled (a page that needs the network shows broken images) and its DOM
is read after the ``load`` event; pages from fx_d2.utils.html record in ``<body
data-images-ok data-images-bad>`` how many images the browser decoded.
"""

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ["SKIP_REASON", "find_chromium", "require_chromium", "PageLoad", "load_page"]

SKIP_REASON = (
    "headless Chromium is not installed: run `make setup-browser` (apt-get install chromium "
    "chromium-driver) or set FX_CHROMIUM to a Chromium/Chrome binary"
)
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> Optional[str]:
    """Path of a Chromium binary: ``$FX_CHROMIUM``, else the first of chromium,
    chromium-browser, google-chrome on PATH (None when there is none)."""
    explicit = os.environ.get("FX_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    """The Chromium path; inside a pytest test, skips it with :data:`SKIP_REASON` when none."""
    path = find_chromium()
    if path is None:
        import pytest

        pytest.skip(SKIP_REASON)
    return path


@dataclass
class PageLoad:
    """What the browser made of a page.

    Attributes:
        dom: the serialised DOM after the load event.
        title: the document title.
        images_ok / images_bad: images decoded / not decoded (-1 when the page does not count).
        screenshot: the PNG written, when one was asked for.
    """

    dom: str
    title: str
    images_ok: int
    images_bad: int
    screenshot: Optional[str] = None


def _command(binary: str, profile: str, *extra: str) -> list:
    return [
        binary,
        "--headless",
        "--no-sandbox",  # root in containers
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no network
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",  # let the load event and its script run
        *extra,
    ]


def load_page(
    path: str,
    screenshot: Optional[str] = None,
    window: Tuple[int, int] = (1280, 2000),
    timeout: float = 120.0,
    binary: Optional[str] = None,
) -> PageLoad:
    """Open ``path`` (an HTML file) in headless Chromium.

    Args:
        screenshot: also write a PNG of the first ``window`` pixels there.
        binary: the Chromium to use (default :func:`find_chromium`).

    Raises:
        FileNotFoundError: no such file, or no Chromium.
        RuntimeError: Chromium failed or printed no DOM.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError(SKIP_REASON)
    url = "file://" + os.path.abspath(path)
    with tempfile.TemporaryDirectory(prefix="fx_chromium_") as profile:
        run = subprocess.run(
            _command(binary, profile, "--dump-dom", url),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if run.returncode != 0 or "<html" not in run.stdout:
            raise RuntimeError(
                f"{binary} could not render {path} (exit {run.returncode}): {run.stderr[-2000:]}"
            )
        if screenshot:
            size = f"--window-size={window[0]},{window[1]}"
            shot = subprocess.run(
                _command(binary, profile, size, "--hide-scrollbars",
                         f"--screenshot={os.path.abspath(screenshot)}", url),
                capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
            if shot.returncode != 0 or not os.path.isfile(screenshot):
                raise RuntimeError(f"{binary} wrote no screenshot of {path}: {shot.stderr[-2000:]}")
    dom = run.stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    body = re.search(r"<body([^>]*)>", dom)
    attrs = body.group(1) if body else ""

    def count(name: str) -> int:
        found = re.search(rf'data-{name}="(\d+)"', attrs)
        return int(found.group(1)) if found else -1

    return PageLoad(
        dom=dom,
        title=title.group(1).strip() if title else "",
        images_ok=count("images-ok"),
        images_bad=count("images-bad"),
        screenshot=screenshot,
    )

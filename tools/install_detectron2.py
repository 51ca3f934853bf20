#!/usr/bin/env python
"""Install Detectron2 into the running interpreter's environment.

Detectron2 is not published on PyPI. Routes, tried in order (each one idempotent):

1. ``keep``: an importable ``detectron2`` is kept as it is.
2. ``official``: ``pip install --no-build-isolation git+<official repo>`` when the repository
   answers within ``--probe-timeout`` seconds. On a GPU machine this builds the CUDA ops.
3. ``sdist``: the PyPI sdist ``pb1-detectron2==0.6`` (the v0.6 Python sources without the C++
   ops) is patched with the upstream compatibility fixes and built as a pure-Python wheel:

   - no extension modules; ``detectron2/_C.py`` is a placeholder whose attribute access raises a
     clear error (0.6 imports ``_C`` at module level in two files);
   - ``Image.LINEAR`` -> ``Image.BILINEAR`` (removed in Pillow 10);
   - the removed NumPy aliases ``np.bool/int/float/str/object`` -> builtins;
   - ``np.array(mask, copy=False)`` -> ``np.asarray(mask)`` (NumPy 2 semantics);
   - the ``black==21.4b2`` pin is dropped.

   The built wheel is cached (``--cache-dir``), so a second run installs in seconds.

Usage: ``python tools/install_detectron2.py [--route auto|official|sdist] [--cache-dir DIR]``.
Exit status 0 on success; non-zero with an explanation when every route fails.
"""

import argparse
import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import List, Optional

logger = logging.getLogger("install_detectron2")

OFFICIAL_REPO = "https://github.com/facebookresearch/detectron2.git"
SDIST_REQUIREMENT = "pb1-detectron2==0.6"
NUMPY_ALIAS = re.compile(r"\bnp\.(bool|int|float|str|object)\b(?!_|\d)")

PLACEHOLDER_C = '''"""Placeholder for detectron2's compiled ops (not in this pure-Python build).

Installed by fx_d2's tools/install_detectron2.py. Without them, deformable convolution, rotated
box ops and the fast COCOeval are unavailable; everything fx_d2 uses works.
"""


def __getattr__(name):
    raise AttributeError(
        f"detectron2._C.{name} is unavailable: this detectron2 was built without compiled ops "
        "(pure-Python build of the 0.6 sources). Install the official source on a machine with a "
        "compiler to get deformable conv, rotated boxes and the fast COCOeval."
    )
'''


def _run(cmd: List[str], timeout: Optional[float] = None, cwd: Optional[str] = None) -> int:
    logger.info("$ %s", " ".join(cmd))
    try:
        return subprocess.run(cmd, timeout=timeout, cwd=cwd).returncode
    except subprocess.TimeoutExpired:
        logger.warning("timed out after %ss: %s", timeout, " ".join(cmd))
        return 124


def _pip(*args: str, timeout: Optional[float] = None, cwd: Optional[str] = None) -> int:
    return _run([sys.executable, "-m", "pip", *args], timeout=timeout, cwd=cwd)


def detectron2_status() -> Optional[str]:
    """Return ``"<version> (compiled ops: yes|no)"`` when detectron2 imports, else None."""
    code = (
        "import detectron2, importlib\n"
        "try:\n"
        "    from detectron2 import _C\n"
        "    ok = hasattr(_C, 'nms_rotated')\n"
        "except Exception:\n"
        "    ok = False\n"
        "print(detectron2.__version__, 'yes' if ok else 'no')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    version, ops = proc.stdout.split()[-2:]
    return f"{version} (compiled ops: {ops})"


def try_official(probe_timeout: float, build_timeout: float) -> bool:
    """Install from the official repository if it is reachable."""
    if shutil.which("git") is None:
        logger.info("official route skipped: git is not installed")
        return False
    rc = _run(["git", "ls-remote", "--exit-code", OFFICIAL_REPO, "HEAD"], timeout=probe_timeout)
    if rc != 0:
        logger.info("official route skipped: %s is not reachable (rc=%d)", OFFICIAL_REPO, rc)
        return False
    rc = _pip("install", "--no-build-isolation", f"git+{OFFICIAL_REPO}", timeout=build_timeout)
    return rc == 0


def patch_sdist_tree(root: str) -> List[str]:
    """Apply the compatibility fixes to an unpacked pb1-detectron2 0.6 tree.

    Returns:
        list of files that were changed, relative to ``root``.
    """
    changed = []
    package = os.path.join(root, "detectron2")
    for path in glob.glob(os.path.join(package, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        new = NUMPY_ALIAS.sub(lambda m: m.group(1), text)
        new = new.replace("Image.LINEAR", "Image.BILINEAR")
        new = new.replace("np.array(mask, copy=False)", "np.asarray(mask)")
        if new != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
            changed.append(os.path.relpath(path, root))
    with open(os.path.join(package, "_C.py"), "w", encoding="utf-8") as f:
        f.write(PLACEHOLDER_C)
    changed.append("detectron2/_C.py")

    setup_py = os.path.join(root, "setup.py")
    with open(setup_py, encoding="utf-8") as f:
        text = f.read()
    new = re.sub(r'\s*"black==[^"]*",', "", text)
    new = new.replace("ext_modules=get_extensions(),", "ext_modules=[],")
    # The import name is detectron2; make pip see the same distribution name.
    new = new.replace('name="pb1-detectron2"', 'name="detectron2"')
    if "ext_modules=[]" not in new:
        raise RuntimeError(f"unexpected setup.py layout in {setup_py}: cannot drop ext_modules")
    with open(setup_py, "w", encoding="utf-8") as f:
        f.write(new)
    changed.append("setup.py")
    return changed


def try_sdist(cache_dir: str) -> bool:
    """Build (or reuse) the patched pure-Python wheel of detectron2 0.6 and install it."""
    os.makedirs(cache_dir, exist_ok=True)
    wheels = sorted(glob.glob(os.path.join(cache_dir, "detectron2-0.6-*.whl")))
    if not wheels:
        with tempfile.TemporaryDirectory() as tmp:
            rc = _pip(
                "download", "--no-deps", "--no-build-isolation", "--no-binary", ":all:",
                SDIST_REQUIREMENT, "-d", tmp,
            )  # fmt: skip
            archives = glob.glob(os.path.join(tmp, "*.tar.gz"))
            if rc != 0 or not archives:
                logger.error("could not download the sdist %s (rc=%d)", SDIST_REQUIREMENT, rc)
                return False
            with tarfile.open(archives[0]) as tar:
                tar.extractall(tmp, filter="data")
            roots = [p for p in glob.glob(os.path.join(tmp, "*")) if os.path.isdir(p)]
            if len(roots) != 1:
                logger.error("unexpected sdist layout: %s", roots)
                return False
            changed = patch_sdist_tree(roots[0])
            logger.info("patched %d files: %s", len(changed), ", ".join(changed))
            rc = _pip("wheel", "--no-build-isolation", "--no-deps", "-w", cache_dir, roots[0])
            if rc != 0:
                logger.error("building the detectron2 wheel failed (rc=%d)", rc)
                return False
        wheels = sorted(glob.glob(os.path.join(cache_dir, "detectron2-0.6-*.whl")))
        if not wheels:
            logger.error("the wheel build produced no detectron2-0.6-*.whl in %s", cache_dir)
            return False
    return _pip("install", wheels[-1]) == 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=["auto", "official", "sdist"], default="auto")
    parser.add_argument("--cache-dir", default=os.path.join(".cache", "detectron2"))
    parser.add_argument("--probe-timeout", type=float, default=20.0)
    parser.add_argument("--build-timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[install_detectron2] %(message)s")

    try:
        import torch  # noqa: F401
    except ImportError:
        logger.error("torch must be installed before detectron2 (its build imports torch)")
        return 2

    status = detectron2_status()
    if status is not None and args.route == "auto":
        logger.info("route: keep -- detectron2 %s is already importable", status)
        return 0
    took = None
    if args.route in ("auto", "official") and try_official(args.probe_timeout, args.build_timeout):
        took = "official"
    elif args.route in ("auto", "sdist") and try_sdist(args.cache_dir):
        took = "sdist"
    status = detectron2_status()
    if took is None or status is None:
        logger.error(
            "every route failed: the official repository was unreachable or did not build, and the "
            "PyPI sdist %s could not be downloaded, patched or built. See the log above.",
            SDIST_REQUIREMENT,
        )
        return 1
    logger.info("route: %s -- detectron2 %s installed", took, status)
    if status.endswith("no)"):
        logger.info(
            "without compiled ops: deformable conv, rotated boxes and the fast COCOeval are "
            "unavailable (fx_d2 uses none of them; COCO evaluation uses pycocotools)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

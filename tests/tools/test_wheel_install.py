"""fx_d2 built as a wheel works without the checkout: the test-support package finds its configs
(package data) and builds the tiny model, in a subprocess that imports fx_d2 from the wheel."""

import glob
import os
import shutil
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHECK = """
import os, sys
import fx_d2, fx_d2.testing
from detectron2.modeling import build_model
from fx_d2.testing import TINY_CONFIG, TOY_CONFIG, synthetic_metadata, tiny_cfg, toy_cfg
site = sys.argv[1]
assert fx_d2.__file__.startswith(site), fx_d2.__file__
assert TINY_CONFIG.startswith(site) and os.path.isfile(TINY_CONFIG), TINY_CONFIG
assert os.path.isfile(TOY_CONFIG) and toy_cfg().MODEL.META_ARCHITECTURE == "FXToyModel"
with synthetic_metadata("wheel", ("cls", "seg"), cls_classes=["a"], seg_classes=["a"]):
    model = build_model(tiny_cfg(["wheel"]))
print("ok", sum(p.numel() for p in model.parameters()))
"""


def test_wheel_ships_the_test_configs_and_imports_without_the_checkout(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(
        os.path.join(ROOT, "fx_d2"), src / "fx_d2", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = glob.glob(str(dist / "fx_d2-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "fx_d2/testing/configs/tiny.yaml" in names
    assert "fx_d2/testing/configs/trainer_toy.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run(
        [sys.executable, "-c", CHECK, str(site)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")

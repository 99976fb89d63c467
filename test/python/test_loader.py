"""Where the package finds libqlib: next to itself first (where pip puts
it), from any working directory, without environment variables; and what it
says when there is none."""

import os
import shutil
import subprocess
import sys

import pytest

from _helpers import ROOT, qlib


def _copy_package(dest):
    shutil.copytree(os.path.join(ROOT, "python", "qlib"), os.path.join(dest, "qlib"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.so*"))
    return os.path.join(dest, "qlib")


def test_library_next_to_the_package(tmp_path):
    built = qlib.library_path()
    pkg = _copy_package(str(tmp_path / "site"))
    inside = os.path.join(pkg, "libqlib.so.%d" % qlib._lib.HEADER_VERSION_MAJOR)
    shutil.copyfile(os.path.realpath(built), inside)
    env = {k: v for k, v in os.environ.items() if k not in ("QLIB_LIBRARY", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = "import qlib, numpy as np; qlib.quantize(np.ones((2, 64), np.float32)); " \
           "print(qlib.library_path())"
    r = subprocess.run([sys.executable, "-c", code], cwd=str(elsewhere), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == inside


def test_not_found_names_the_ways_out(tmp_path, monkeypatch):
    absent = str(tmp_path / "libqlib.so.0")
    monkeypatch.setattr(qlib._lib, "_candidates", lambda: [(absent, False), (None, False)])
    with pytest.raises(qlib.LibraryNotFoundError) as e:
        qlib._lib._load()
    msg = str(e.value)
    for word in ("QLIB_LIBRARY", "LD_LIBRARY_PATH", "ldconfig", "pip install", absent):
        assert word in msg, msg

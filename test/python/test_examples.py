"""The Python example runs and prints its table."""

import os
import subprocess
import sys

from _helpers import ROOT


def test_quickstart():
    script = os.path.join(ROOT, "examples", "python", "quickstart.py")
    r = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "rtn" in r.stdout and "output err" in r.stdout
    assert "gptq" in r.stdout

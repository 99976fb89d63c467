"""The build steps pyproject.toml cannot state: the C library is built with
make and copied into the package, the version is the header's, and the
wheel is marked as platform-specific (it carries a native library, though no
Python extension module: any CPython 3 of this platform can load it)."""

import os
import re
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from wheel.bdist_wheel import bdist_wheel
except ImportError:          # no wheel package: pip reports what it needs
    bdist_wheel = None

ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join("build", "python")     # setuptools' work files, beside make's


def header_version():
    with open(os.path.join(ROOT, "include", "qlib.h")) as f:
        text = f.read()
    return ".".join(re.search(r"#define QLIB_VERSION_%s (\d+)" % part, text).group(1)
                    for part in ("MAJOR", "MINOR", "PATCH"))


def missing_packages():
    try:
        r = subprocess.run(["sh", os.path.join(ROOT, "scripts", "deps.sh"), "--list"],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
        return r.stdout.split()
    except (OSError, subprocess.SubprocessError):
        return []


class build_py_with_library(build_py):
    """build_py, then `make lib/libqlib.so.<version>`, copied into the
    package as qlib/libqlib.so.<major> (the name the loader looks for)."""

    def run(self):
        super().run()
        version = header_version()
        target = os.path.join("lib", "libqlib.so." + version)
        cmd = [os.environ.get("MAKE", "make"), "-C", ROOT, "--no-print-directory",
               "-j%d" % (os.cpu_count() or 1), target]
        try:
            subprocess.run(cmd, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            need = missing_packages()
            raise SystemExit("building the C library failed (%s: %s).%s" % (
                " ".join(cmd), e, " Missing Debian packages: %s (sudo apt-get install %s)."
                % (", ".join(need), " ".join(need)) if need else
                " It needs a C compiler, make, pkg-config and OpenBLAS (CBLAS + LAPACK)."))
        dest = os.path.join(self.build_lib, "qlib", "libqlib.so." + version.split(".")[0])
        self.mkpath(os.path.dirname(dest))
        shutil.copyfile(os.path.join(ROOT, target), dest)
        os.chmod(dest, 0o755)


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


cmdclass = {"build_py": build_py_with_library}
if bdist_wheel is not None:
    class bdist_wheel_any_python(bdist_wheel):
        """py3-none-<platform>: ctypes needs no particular Python ABI."""

        def get_tag(self):
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = bdist_wheel_any_python

os.makedirs(os.path.join(ROOT, BUILD), exist_ok=True)
setup(
    version=header_version(),
    distclass=BinaryDistribution,
    cmdclass=cmdclass,
    options={"build": {"build_base": BUILD}, "egg_info": {"egg_base": BUILD}},
)

"""An installed package with a file missing fails at first use with one
error naming that file (not a traceback from deep in cffi or the loader).

The installed package is copied to a temporary folder, a file is removed,
and a fresh interpreter imports the copy and makes an index."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lodestone

INSTALLED = Path(lodestone.__file__).resolve().parent
BUNDLE = INSTALLED / "_lib"
pytestmark = pytest.mark.skipif(not BUNDLE.is_dir(), reason="runs on an installed package (lodestone/_lib/)")

USE = "import lodestone; lodestone.HNSWIndex(4, 'euclidean')"


def _copy(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    shutil.copytree(INSTALLED, site / "lodestone")
    libs = INSTALLED.parent / "lodestone.libs"  # what auditwheel grafted in, if anything
    if libs.is_dir():
        shutil.copytree(libs, site / "lodestone.libs")
    return site


def _run(site: Path):
    env = {k: v for k, v in os.environ.items() if k != "LODESTONE_LIBRARY"}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-c", USE], capture_output=True, text=True, env=env, cwd=site)


def test_the_copy_works_whole(tmp_path):
    assert _run(_copy(tmp_path)).returncode == 0


@pytest.mark.parametrize("name", ["libLodestoneC.so", "lodestone.h"])
def test_a_missing_bundled_file_is_named(tmp_path, name):
    site = _copy(tmp_path)
    (site / "lodestone" / "_lib" / name).unlink()
    run = _run(site)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: lodestone: the installed package is damaged:"), run.stderr
    assert f"_lib/{name} is missing" in last and "reinstall" in last


def test_a_missing_grafted_library_is_named(tmp_path):
    site = _copy(tmp_path)
    libs = sorted((site / "lodestone.libs").glob("libopenblas*")) if (site / "lodestone.libs").is_dir() else []
    if not libs:
        pytest.skip("no library grafted by auditwheel (installed from source)")
    libs[0].unlink()
    run = _run(site)
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode != 0 and last.startswith("ImportError: lodestone: cannot load"), run.stderr
    assert libs[0].name in last and "damaged: reinstall it" in last

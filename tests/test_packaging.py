"""Packaging: the wheel declares its licence as an SPDX expression with the LICENSE file, builds
without deprecation warnings, ships no bench extra it cannot serve, and a fresh virtualenv that
installs only the built wheel (and its declared dependencies) runs `mynaemu demo` to the end."""
from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                           "-w", str(out), str(REPO)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("mynaemu-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], done.stdout + done.stderr


def test_wheel_metadata_has_an_spdx_licence_and_no_bench_extra(wheel):
    path, log = wheel
    assert "deprecat" not in log.lower(), log
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode("utf-8"))
        assert any(n.endswith("licenses/LICENSE") for n in names), names
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in meta.get_all("License-File")
    classifiers = meta.get_all("Classifier")
    assert "Topic :: Software Development :: Testing" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)   # PEP 639: the expression says it
    extras = meta.get_all("Provides-Extra")
    assert "bench" not in extras            # bench/ is not in the wheel: no extra pretends to serve it
    requires = " ".join(meta.get_all("Requires-Dist"))
    for dep in ("cryptography", "click", "reportlab", "pyhanko"):
        assert dep in requires
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_fresh_venv_with_the_wheel_runs_the_demo(wheel, tmp_path):
    path, _ = wheel
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(path)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MYNAEMU_HOME", "PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(venv / "bin" / "mynaemu"), "demo"], cwd=work, capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pdf = work / "mynaemu-demo-juminhyo.pdf"
    assert pdf.read_bytes().startswith(b"%PDF") and "refused [cert-hold]" in done.stdout
    # the installed package is the wheel's, not this checkout
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import mynaemu.card, sys; print(mynaemu.card.__file__)"],
                           capture_output=True, text=True, timeout=60, env=env, cwd=work)
    assert str(venv) in where.stdout and str(REPO) not in where.stdout, where.stdout

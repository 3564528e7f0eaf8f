"""The wheel is complete: every module and every config, found from anywhere.

A non-editable install has no repository beside it: the configs must travel inside the
wheel (as the package ``dance_conf``) and the commands must find them there."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dataset_gen", "evaluator", "search")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the source (the build writes build/ and egg-info there)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "conf", *PACKAGES):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (ROOT / name).is_dir() else {}))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = out.glob("dance_cosearch-*.whl")
    return path, done.stdout + done.stderr


def test_the_wheel_holds_every_module_and_every_config(wheel):
    path, _ = wheel
    names = set(zipfile.ZipFile(path).namelist())
    modules = {str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    configs = {"dance_conf/" + str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    assert modules - names == set()
    assert configs - names == set()


def test_the_build_gives_no_setuptools_warning(wheel):
    _, log = wheel
    assert "BuildBackendWarning" not in log  # e.g. "`project.license` as a TOML table is deprecated"
    assert "SetuptoolsDeprecationWarning" not in log and "SetuptoolsWarning" not in log


def test_an_unpacked_wheel_composes_and_runs_from_another_folder(wheel, tmp_path):
    path, _ = wheel
    site = tmp_path / "site"
    zipfile.ZipFile(path).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The unpacked wheel comes first on sys.path, before the editable install of this checkout.
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    probe = ("import dance_conf, dataset_gen; from dataset_gen.common.config import config_dir, compose_config; "
             "print(config_dir()); print(dataset_gen.__file__); "
             "print(compose_config('train', ['dataset=/d']).datamodule.path)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    conf, module, data_path = done.stdout.split()
    assert Path(conf).is_relative_to(site) and Path(module).is_relative_to(site) and data_path == "/d"
    # the console script's Hydra app finds its primary config (no "Primary config directory not found")
    shown = subprocess.run([sys.executable, "-m", "dataset_gen.cli_gen", "--cfg", "job", "space=small"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "name: small" in shown.stdout

"""What a fresh install depends on: mgr runs beside a torchaudio whose compiled library
cannot load, and every run records the environment it ran in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_dir_of, tiny

# What `import torchaudio` raises when its library does not match the installed torch
# (torchaudio 2.11.1 beside torch 2.11.0).
BROKEN_TORCHAUDIO = '''raise OSError("Could not load this library: libtorchaudio.so: undefined symbol: "
              "torch_exception_get_what_without_backtrace")
'''

EVERY_MODULE_AND_FRONTEND = '''
import pkgutil, importlib, sys, torch
import mgr
for module in pkgutil.walk_packages(mgr.__path__, "mgr."):
    if module.name != "mgr.conf" and not module.name.startswith("mgr.conf."):
        importlib.import_module(module.name)
from mgr.features import FRONTENDS, build_augment, build_frontend
for name in FRONTENDS:
    for backend in ([None] if name == "gammatone" else ["torch", "nnaudio"]):
        settings = {"name": name, "sample_rate": 16000, **({"backend": backend} if backend else {})}
        assert torch.isfinite(build_frontend(settings)(torch.randn(2, 16000))).all()
build_augment({"name": "specaugment"}, 32, 100).train()(torch.randn(2, 1, 32, 100))
assert "torchaudio" not in sys.modules, "something imported torchaudio"
print("ok")
'''


def broken_torchaudio(tmp_path: Path) -> dict:
    package = tmp_path / "shadow" / "torchaudio"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(BROKEN_TORCHAUDIO)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(package.parent), os.environ.get("PYTHONPATH", "")])}


# Then, in the same interpreter, `python -m mgr.train <argv>` as mgr_in_process runs it: the
# imports of the check above serve the run, one process start (about 14 s of CPU) fewer.
AND_A_TRAIN_RUN = '''
import os, sys
from mgr.train import main
os.chdir(sys.argv[1])
sys.argv = ["mgr.train", *sys.argv[2:]]
main()
'''


@pytest.mark.slow
def test_every_module_frontend_and_a_run_work_beside_a_torchaudio_that_cannot_load(tmp_path, data_dir):
    env = broken_torchaudio(tmp_path)
    shadowed = subprocess.run([sys.executable, "-c", "import torchaudio"], env=env, capture_output=True, text=True)
    assert "undefined symbol" in shadowed.stderr  # the shadow package really fails as the real one did
    # The run records the environment it ran in; it trains with augment=specaugment.
    train = [*tiny("cnn", "mel"), "augment=specaugment", f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'logs'}"]
    env = {k: v for k, v in env.items() if not k.startswith("MGR_")}
    done = subprocess.run([sys.executable, "-c", EVERY_MODULE_AND_FRONTEND + AND_A_TRAIN_RUN, str(tmp_path), *train],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.splitlines()[0] == "ok"
    check_environment(done)


def check_environment(proc: subprocess.CompletedProcess) -> None:
    env = json.loads((run_dir_of(proc) / "environment.json").read_text())
    import torch

    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["packages"]["torch"] == torch.__version__.split("+")[0]
    assert env["torch_cuda"] == torch.version.cuda
    for name in ("nnAudio", "pytorch-lightning", "torchmetrics", "hydra-core", "wandb", "numpy"):
        assert env["packages"][name], name
    assert "torchaudio" in env["packages"]  # recorded (None when absent): it may still be installed
    assert env["mgr"]["version"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout: the commit the installed mgr was built from
        assert head.stdout.strip().startswith(env["mgr"]["commit"])
    hparams = (run_dir_of(proc) / "csv" / "hparams.yaml").read_text()
    assert "environment:" in hparams and "pytorch-lightning" in hparams  # loggers get it with the config


def test_every_package_under_src_ships():
    """pyproject.toml lists mgr's packages by name (mgr.conf lives outside src/, so setuptools' find
    cannot be used); a subpackage missing from the list would be absent after `pip install .`."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(root / "src").parts) for p in (root / "src").rglob("__init__.py")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages in pyproject.toml"

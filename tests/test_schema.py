"""mgr.schema: what annotations accept, signatures read from source without importing, and the
check of `_target_` nodes."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any, List, Optional

import pytest
from omegaconf import OmegaConf

from mgr import MGRError
from mgr.schema import accepts, check_settings, check_targets, settings_dataclass, signature_of


@pytest.mark.parametrize("annotation,good,bad", [
    ("int", [3, 0, -1], ["abc", 2.5, True, None]),
    ("Optional[int]", [3, None], ["abc", 2.5]),
    ("int | None", [3, None], ["3x"]),
    ("float", [1, 0.5], ["abc", None, False]),
    ("Union[int, float]", [1, 0.5], ["half"]),
    ("bool", [True, False], [1, "yes"]),
    ("str | None", ["hann", None], [3]),
    ("list[list[int]]", [[[2, 2], [3, 2]], []], [[["a"]], 3]),
    ("Union[list[int], str, int]", [[0, 1], "auto", 2], [2.5]),
    ("Literal['min', 'max']", ["min", "max"], ["up", 1, None]),
    ("Optional[Literal[1, 2]]", [1, 2, None], [3, True, "1"]),
])
def test_an_annotation_accepts_its_values_and_refuses_others(annotation, good, bad):
    allowed = accepts(annotation)
    assert all(allowed.admits(v) for v in good), allowed
    assert not any(allowed.admits(v) for v in bad), allowed


def test_what_a_config_cannot_check_accepts_anything():
    for annotation in ("Optional[_PRECISION_INPUT]", "Union[str, Accelerator]", "Literal[MODE]", None):
        assert not accepts(annotation).checkable and accepts(annotation).admits(object())


def test_structured_config_types_follow_the_annotations():
    assert accepts("int | None").omegaconf_type() == Optional[int]
    assert accepts("list[list[int]]").omegaconf_type() == List[List[int]]
    assert accepts("list[list[int]] | str").omegaconf_type() is Any

    class Net:
        def __init__(self, n_bins: int, n_frames: int, dropout: float = 0.1, pools: list[int] = (2, 2)):
            pass

    schema = OmegaConf.structured(settings_dataclass(Net, "net", 2))
    assert schema.pools == [2, 2] and schema.name == "net"
    with pytest.raises(Exception, match="could not be converted"):
        schema.dropout = "abc"


def test_signatures_are_read_from_source_without_importing_and_follow_re_exports():
    trainer = signature_of("pytorch_lightning.Trainer")  # re-exported twice: pytorch_lightning -> .trainer -> .trainer.trainer
    assert not trainer.open and trainer.parameters["max_epochs"].words() == "an integer or null"
    early = signature_of("pytorch_lightning.callbacks.EarlyStopping")
    assert early.parameters["patience"].words() == "an integer"
    data = signature_of("mgr.data.GenreDataModule")  # behind mgr.data's lazy __getattr__
    assert data.parameters["batch_size"].words() == "an integer"
    assert signature_of("no.such.Thing").open  # unknown: nothing to check against
    # Lightning's import takes seconds that a wrong value should not cost.
    script = ("import sys; from mgr.schema import signature_of; signature_of('pytorch_lightning.Trainer'); "
              "signature_of('mgr.data.GenreDataModule'); print(sorted(m for m in sys.modules if 'lightning' in m "
              "or m == 'torch' or m == 'mgr.data.datamodule'))")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_target_nodes_are_checked_key_by_key():
    good = OmegaConf.create({"trainer": {"_target_": "pytorch_lightning.Trainer", "max_epochs": 3, "devices": 1},
                             "callbacks": {"stop": {"_target_": "pytorch_lightning.callbacks.EarlyStopping",
                                                    "monitor": "val/loss", "patience": "${n}"}}, "n": 4})
    check_targets(good)
    with pytest.raises(MGRError, match=r"^trainer.max_epochs=abc is not accepted: pytorch_lightning.Trainer takes an "
                                       r"integer or null for max_epochs\.$"):
        check_targets(OmegaConf.merge(good, {"trainer": {"max_epochs": "abc"}}))
    with pytest.raises(MGRError, match=r"^callbacks.stop.patience=x is not accepted"):
        check_targets(OmegaConf.merge(good, {"n": "x"}))  # interpolations are resolved first
    with pytest.raises(MGRError, match=r"^trainer.max_epoch is not a setting of pytorch_lightning.Trainer; it takes "):
        check_targets(OmegaConf.merge(good, {"trainer": {"max_epoch": 3}}))


def test_a_target_that_takes_any_keyword_takes_any_key():
    check_targets(OmegaConf.create({"logger": {"w": {"_target_": "pytorch_lightning.loggers.WandbLogger",
                                                     "project": "mgr", "anything": 1}}}))


def test_a_commands_own_keys_are_checked_against_its_settings():
    from mgr.train import TrainSettings

    good = OmegaConf.create({"seed": 42, "test": True, "calibrate": False, "novelty": "${test}", "optimized_mode": "max",
                             "optimized_metric": "val/track_acc", "ckpt_path": None, "task_name": "train"})
    check_settings(good, TrainSettings)  # keys it does not list, and listed keys it lacks, are left alone
    for key, value, says in [("novelty", "yes", "novelty=yes is not accepted; give true or false."),
                             ("calibrate", 0, "calibrate=0 is not accepted; give true or false."),
                             ("seed", 1.5, "seed=1.5 is not accepted; give an integer or null."),
                             ("optimized_mode", "up", "optimized_mode=up is not accepted; give one of min, max."),
                             ("test", "${seed}", "test=42 is not accepted; give true or false.")]:
        with pytest.raises(MGRError, match=f"^{re.escape(says)}$"):
            check_settings(OmegaConf.merge(good, {key: value}), TrainSettings)

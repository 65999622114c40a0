"""`python -m mgr.<command> --help` lists the command's own options and groups, each with what it
does, and nothing of the other commands or of mgr's internal groups."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from conftest import mgr_in_process
from mgr.help import group_options, help_text, parse

COMMANDS = ("train", "eval", "embed", "predict", "report", "download", "verify")
TRAINING_GROUPS = ("model", "feature", "augment", "optimizer", "scheduler", "recipe", "experiment", "callbacks")
INTERNAL = ("paths=", "hydra=", "net_defaults", "feature_defaults", "augment_defaults", "base", "task_name")


@pytest.mark.parametrize("command,own", [("predict", ("ckpt_path", "inputs")), ("report", ("sweep_dir", "alpha")),
                                         ("verify", ("caches",)), ("download", ("dataset", "root", "mirror"))])
def test_help_names_the_commands_options_and_no_training_group(command, own, tmp_path):
    helped = mgr_in_process(command, "--help", cwd=tmp_path, data_dir=tmp_path / "data")
    assert helped.returncode == 0 and helped.stdout.startswith(f"python -m mgr.{command} ")
    for key in own:
        assert f"\n  {key}=" in helped.stdout, key
    for group in TRAINING_GROUPS:
        assert f"{group}=" not in helped.stdout, group
    for internal in INTERNAL:
        assert internal not in helped.stdout, internal
    assert not (tmp_path / "data").exists() and not (tmp_path / "logs").exists()  # help does no work


def test_train_help_lists_its_groups_with_their_options():
    text = help_text("train")
    for group in ("data", "feature", "model", "trainer", "logger", "experiment", "debug"):
        assert f"\n  {group}=" in text, group
    assert "mel64" in text and "short_chunk_resnet" in text and "suite/scratch" in text  # options, subfolders too
    assert "base" not in group_options("data")  # a file others start from, not a dataset
    for internal in INTERNAL:
        assert internal not in text, internal


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_a_command_is_in_its_help_with_what_it_does(command):
    """The help is read from the config file; this keeps the two one: every key the command's
    composed config holds at the top (but task_name and the groups) is listed, and says what it does."""
    with initialize_config_module("mgr.conf", version_base="1.3"):
        cfg = compose(config_name=command)
    _, options, groups = parse(help_text_source(command))
    listed = {key.split(".")[0] for key, _, _ in options}
    groups_listed = {g for g, _, _ in groups}
    own = {k for k in cfg.keys() if k != "task_name" and not OmegaConf.is_dict(cfg._get_node(k)) or k in ("tsne", "bootstrap")}
    assert own - groups_listed <= listed, own - listed
    assert all(what for _, _, what in options), [k for k, _, what in options if not what]


def help_text_source(command: str) -> str:
    from importlib import resources

    return (resources.files("mgr.conf") / f"{command}.yaml").read_text()


def test_the_parser_reads_keys_comments_and_groups():
    usage, options, groups = parse("# python -m mgr.x a=1\n# Does x.\ndefaults:\n  - _self_\n  - data: null  # the data. More.\n"
                                   "  - paths: default\n\ntask_name: x\n# What a is. More about a.\na: 1\nb:\n  c: 2  # c's use\n")
    assert usage == ["python -m mgr.x a=1", "Does x."]
    assert groups == [("data", "null", "the data. More.")]
    assert options == [("a", "1", "What a is."), ("b.c", "2", "c's use")]

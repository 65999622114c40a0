"""`python -m mgr.<command> --help`: the command's own options, read from its config file.

conf/<command>.yaml is the one place a command's options are described: its opening comment is the
usage, each top-level key's comment (on its line, or the lines above it) says what the key does,
and each config group of its defaults list that has a comment on its line is listed with that
comment and its options (the files of conf/<group>/). Groups without such a comment (paths, hydra,
the training groups that eval and embed only make room for) are internal and stay out of the help.
"""

from __future__ import annotations

import re
import textwrap
from importlib import resources

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")
GROUP = re.compile(r"^  - (?:override )?(?P<group>[\w/]+): (?P<option>[^#\s]+)\s*(?:#\s?(?P<comment>.*))?$")
INTERNAL_KEYS = {"task_name", "defaults", "hydra"}
FLAGS = (("--cfg job", "print the composed config and stop"),
         ("-m, --multirun", "run every combination of comma-separated values (a sweep), e.g. seed=1,2,3"),
         ("--hydra-help", "Hydra's own options (launchers, sweepers, logging)"))
WIDTH = 100


def help_text(command: str) -> str:
    text = (resources.files("mgr.conf") / f"{command}.yaml").read_text()
    usage, options, groups = parse(text)
    lines = [*usage, ""]
    if groups:
        lines.append("Config groups (group=option):")
        lines += [entry for g in groups for entry in group_lines(*g)]
        lines.append("")
    lines.append("Options (key=value; nested keys with dots):")
    lines += [row(f"{key}={'<required>' if value == '???' else value}", comment) for key, value, comment in options]
    lines += ["", "Flags:"] + [row(flag, what) for flag, what in FLAGS]
    return "\n".join(lines)


def parse(text: str) -> tuple[list[str], list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """The usage (the opening comment), the options (key, value, what it does) and the listed groups
    (group, default option, what it chooses) of a command's config file."""
    usage, options, groups, block, parents = [], [], [], [], []
    lines = text.splitlines()
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        usage.append(lines[i].lstrip("#").strip())
        i += 1
    for line in lines[i:]:
        if line.strip().startswith("#"):
            block.append(line.strip().lstrip("#").strip())
            continue
        if group := GROUP.match(line):
            if group["comment"]:
                groups.append((group["group"], group["option"], group["comment"]))
            block = []
            continue
        key = KEY.match(line)
        if key is None:
            block = []
            continue
        depth = len(key["indent"]) // 2
        parents = parents[:depth] + [key["key"]]
        value = key["value"].strip()
        if parents[0] not in INTERNAL_KEYS and value:  # a mapping's own line has no value: its keys follow
            options.append((".".join(parents), value, first_sentence(key["comment"] or " ".join(block))))
        block = []
    return usage, options, groups


def group_lines(group: str, default: str, comment: str) -> list[str]:
    choices = ", ".join(group_options(group))
    return [row(f"{group}={default}", first_sentence(comment)),
            *textwrap.wrap(f"one of: {choices}", WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 8)]


def group_options(group: str) -> list[str]:
    """The options of a config group: conf/<group>/**/*.yaml, as `sub/name` below subfolders;
    `base` files, which others start from, are not options."""
    root = resources.files("mgr.conf") / group
    found = []

    def walk(folder, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".yaml") and entry.name != "base.yaml":
                found.append(prefix + entry.name.removesuffix(".yaml"))

    walk(root, "")
    return found


def first_sentence(text: str | None) -> str:
    text = " ".join((text or "").split())
    match = re.search(r"(?<=[a-z0-9)\]])[.;] ", text)
    return text[: match.start() + 1].rstrip(";") if match else text


def row(name: str, what: str) -> str:
    if not what:
        return f"  {name}"
    if len(name) > 30:
        return "\n".join([f"  {name}", *textwrap.wrap(what, WIDTH, initial_indent=" " * 34, subsequent_indent=" " * 34)])
    return "\n".join(textwrap.wrap(f"{what}", WIDTH, initial_indent=f"  {name:<30s}  ", subsequent_indent=" " * 34))

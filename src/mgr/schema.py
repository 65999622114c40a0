"""The config's types, made from the code's annotations, so that a wrong value stops before any work.

Two kinds of config node, two ways to the same annotations:
- `model`, `feature` and `augment` hold plain values selected by `name` (they are stored in checkpoints).
  Their schema is registered in Hydra's ConfigStore from the signatures of mgr.nets, mgr.features and
  SpecAugment: conf/<group>/<option>.yaml start from `/<group>_defaults@_here_: <name>`, state only
  what differs from the code, and Hydra refuses a misspelt key or a wrong type at composition, also
  under `--cfg job`.
- `_target_` nodes (trainer, data, callbacks, logger, and any a user adds) are checked by
  `check_targets` once Hydra has composed the config, before the command does any work, against the
  signature of the class or function they name. That signature is read from its source file with
  `ast`, not imported: Lightning's import costs seconds that a wrong value should not.

`config_error` turns Hydra's and OmegaConf's composition errors into one sentence.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from mgr import MGRError

# conf/<group>/<option>.yaml: `defaults: [{/<group>_defaults@_here_: <name>}, _self_]`
SCHEMA_GROUPS = ("net_defaults", "feature_defaults", "augment_defaults")
SIMPLE = {"int": int, "float": float, "bool": bool, "str": str}
WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "none": "null",
         "list": "a list", "dict": "a mapping"}


@dataclasses.dataclass(frozen=True)
class Accepts:
    """What an annotation accepts, in the few kinds a config value can have; `any` when it says
    something a config cannot check (a class, a Literal alias)."""

    kinds: frozenset[str]
    item: "Accepts | None" = None  # a list's items
    choices: tuple | None = None  # a Literal's values, the only ones it admits

    @property
    def checkable(self) -> bool:
        return "any" not in self.kinds

    def admits(self, value: Any) -> bool:
        if not self.checkable:
            return True
        if self.choices is not None:
            return any(value == c and type(value) is type(c) for c in self.choices)
        if value is None:
            return "none" in self.kinds
        if isinstance(value, bool):
            return "bool" in self.kinds
        if isinstance(value, int):
            return bool({"int", "float"} & self.kinds)
        if isinstance(value, float):
            return "float" in self.kinds
        if isinstance(value, str):
            return "str" in self.kinds
        if isinstance(value, (list, tuple)):
            return "list" in self.kinds and (self.item is None or all(self.item.admits(v) for v in value))
        if isinstance(value, dict):
            return "dict" in self.kinds
        return False

    def words(self) -> str:
        if not self.checkable:
            return "any value"
        if self.choices is not None:
            return "one of " + ", ".join(map(as_written, self.choices))
        kinds = sorted(self.kinds - {"none"}, key=list(WORDS).index) + (["none"] if "none" in self.kinds else [])
        return " or ".join(WORDS[k] for k in kinds)

    def omegaconf_type(self) -> Any:
        """The type a structured config field takes: a plain type, Optional of one, a list of one; else Any."""
        kinds = self.kinds - {"none"}
        if not self.checkable or len(kinds) != 1:
            return Any
        [kind] = kinds
        if kind in SIMPLE:
            plain = SIMPLE[kind]
        elif kind == "list":
            item = self.item.omegaconf_type() if self.item else Any
            plain = List[item]
        else:
            plain = Dict[str, Any]
        return Optional[plain] if "none" in self.kinds else plain


ANY = Accepts(frozenset({"any"}))


def as_written(value: Any) -> str:
    """A config value as a user writes it on the command line: null, true, false, 3, rock."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def accepts(annotation: str | ast.expr | None) -> Accepts:
    """What an annotation (its source text: `int | None`, `Optional[int]`, `list[list[int]]`) accepts."""
    if annotation is None or annotation is inspect.Parameter.empty:
        return ANY
    node = ast.parse(annotation, mode="eval").body if isinstance(annotation, str) else annotation
    parts = _union_parts(node)
    if parts is not None:
        members = [accepts(p) for p in parts]
        if not all(m.checkable for m in members):
            return ANY
        lists = [m.item for m in members if "list" in m.kinds]
        # Literals (and None) alone keep their values; beside any other member, its kinds decide.
        literal = all(m.choices is not None or m.kinds == {"none"} for m in members)
        choices = tuple(c for m in members for c in (m.choices or (None,))) if literal else None
        return Accepts(frozenset().union(*(m.kinds for m in members)), lists[0] if len(lists) == 1 else None, choices)
    name = _name(node.value if isinstance(node, ast.Subscript) else node)
    if isinstance(node, ast.Constant) and node.value is None:
        return Accepts(frozenset({"none"}))
    if name == "Literal" and isinstance(node, ast.Subscript):
        values = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if not all(isinstance(v, ast.Constant) for v in values):
            return ANY
        choices = tuple(v.value for v in values)
        kinds = {"none" if c is None else type(c).__name__ for c in choices}
        return Accepts(frozenset(kinds), choices=choices) if kinds <= {*SIMPLE, "none"} else ANY
    if name in SIMPLE and not isinstance(node, ast.Subscript):
        return Accepts(frozenset({name}))
    if name in ("list", "List", "tuple", "Tuple", "Sequence"):
        item = node.slice if isinstance(node, ast.Subscript) else None
        if isinstance(item, ast.Tuple):  # tuple[int, ...]
            item = item.elts[0]
        return Accepts(frozenset({"list"}), accepts(item) if item is not None else None)
    if name in ("dict", "Dict", "Mapping"):
        return Accepts(frozenset({"dict"}))
    return ANY


def _union_parts(node: ast.expr) -> list[ast.expr] | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return (_union_parts(node.left) or [node.left]) + (_union_parts(node.right) or [node.right])
    if isinstance(node, ast.Subscript) and _name(node.value) in ("Optional", "Union"):
        parts = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        return parts + ([ast.Constant(None)] if _name(node.value) == "Optional" else [])
    return None


def _name(node: ast.expr) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


# --- model, feature and augment: structured configs from the code's signatures ---------------------

def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def settings_dataclass(cls: type, name: str, skip: int, extra: dict[str, Any] | None = None) -> type:
    """A dataclass of `cls`'s settings after its first `skip` parameters (those mgr fills in: a net's
    n_bins and n_frames, a frontend's sample rate), typed by their annotations, plus `name`."""
    fields = [("name", str, dataclasses.field(default=name))]
    fields += [(k, Any, dataclasses.field(default=v)) for k, v in (extra or {}).items()]
    for p in list(inspect.signature(cls).parameters.values())[skip:]:
        default = _plain(p.default)
        field = (dataclasses.field(default_factory=lambda d=default: d) if isinstance(default, list)
                 else dataclasses.field(default=default))
        fields.append((p.name, accepts(p.annotation).omegaconf_type(), field))
    return dataclasses.make_dataclass(f"{cls.__name__}Settings", fields)


def register_schemas() -> None:
    from hydra.core.config_store import ConfigStore

    from mgr.features import FRONTENDS
    from mgr.features.augment import SpecAugment
    from mgr.nets import NETS

    store = ConfigStore.instance()
    for name, cls in NETS.items():  # head: null is a trained linear layer
        store.store(group="net_defaults", name=name, node=settings_dataclass(cls, name, 2, {"head": None}))
    for name, cls in FRONTENDS.items():
        store.store(group="feature_defaults", name=name, node=settings_dataclass(cls, name, 1))
    store.store(group="augment_defaults", name="specaugment", node=settings_dataclass(SpecAugment, "specaugment", 2))


# --- _target_ nodes: checked against the signature in the source ----------------------------------

@dataclasses.dataclass(frozen=True)
class Signature:
    target: str
    parameters: dict[str, Accepts]
    open: bool  # takes **kwargs, or its parameters could not be read: any key may be right


@lru_cache(maxsize=None)
def signature_of(target: str) -> Signature:
    """The keyword parameters of the class (its __init__) or function `target` names, from its
    source, following re-exports (`from .trainer import Trainer`) without importing anything."""
    module, _, name = target.rpartition(".")
    for _ in range(8):  # re-exports to follow
        tree = _module_tree(module)
        found = _definition(tree, module, name) if tree else None
        if found is None:
            break
        if isinstance(found, tuple):
            module, name = found
            continue
        function = found
        if isinstance(found, ast.ClassDef):
            function = next((n for n in found.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
            if function is None:  # inherited: its base's, which this does not chase
                break
        args = function.args
        positional = args.posonlyargs + args.args
        parameters = {a.arg: accepts(a.annotation) for a in positional + args.kwonlyargs
                      if a.arg not in ("self", "cls")}
        return Signature(target, parameters, open=args.kwarg is not None)
    return Signature(target, {}, open=True)


def _module_tree(module: str) -> ast.Module | None:
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)  # the top package only: finding a.b would import a
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    if rest and not spec.submodule_search_locations:
        return None
    base = Path(spec.origin).parent
    candidates = [Path(spec.origin)] if not rest else [base.joinpath(*rest).with_suffix(".py"),
                                                       base.joinpath(*rest, "__init__.py")]
    for path in candidates:
        if path.is_file():
            try:
                return ast.parse(path.read_text())
            except (OSError, SyntaxError, UnicodeDecodeError):
                return None
    return None


def _definition(tree: ast.Module, module: str, name: str) -> ast.ClassDef | ast.FunctionDef | tuple[str, str] | None:
    """The class or function `name` defined at the top of `module`, or the (module, name) it imports
    it from: at the top, or inside a function (a package's lazy `__getattr__`)."""
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
            return node
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _absolute(module, node), alias.name
    return None


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")  # `module` is a package when the import is relative to it (its __init__)
    base = package[: len(package) - node.level + 1] if _is_package(module) else package[: len(package) - node.level]
    return ".".join(base + ([node.module] if node.module else []))


def _is_package(module: str) -> bool:
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    return bool(spec and spec.origin and Path(spec.origin).parent.joinpath(*rest, "__init__.py").is_file())


def check_targets(cfg: DictConfig) -> None:
    """Every `_target_` node's keys and values against its target's signature: one sentence for the
    first key it does not take or value of a type it does not accept."""
    for path, node in _target_nodes(cfg):
        target = node.get("_target_")
        signature = signature_of(str(target))
        values = OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
        for key, value in values.items():
            if key.startswith("_") or value == "???":
                continue
            where = f"{path}.{key}" if path else key
            if key not in signature.parameters:
                if not signature.open:
                    raise MGRError(f"{where} is not a setting of {target}; it takes {', '.join(sorted(signature.parameters))}.")
                continue
            allowed = signature.parameters[key]
            if not isinstance(value, (dict, list)) and not allowed.admits(value):
                raise MGRError(f"{where}={value} is not accepted: {target} takes {allowed.words()} for {key}.")


def check_settings(cfg: DictConfig, settings: type) -> None:
    """A command's own top-level keys (train's seed, test, optimized_mode ...) against the annotations of
    the dataclass `settings` that lists them (a Literal: its values only): one sentence for the first
    value it does not accept, before any work. Keys the config does not hold are left to the command."""
    for field in dataclasses.fields(settings):
        if field.name not in cfg or OmegaConf.is_missing(cfg, field.name):
            continue
        value = cfg[field.name]
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        allowed = accepts(field.type)
        if not allowed.admits(value):
            raise MGRError(f"{field.name}={as_written(value)} is not accepted; give {allowed.words()}.")


def _target_nodes(cfg: DictConfig, path: str = "") -> list[tuple[str, DictConfig]]:
    found = []
    for key in cfg.keys():
        if key == "hydra" or OmegaConf.is_missing(cfg, key):
            continue
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            where = f"{path}.{key}" if path else str(key)
            found += [(where, child)] if "_target_" in child else _target_nodes(child, where)
    return found


# --- Hydra's composition errors as one sentence ------------------------------------------------------

def config_error(e: BaseException) -> MGRError | None:
    """One sentence for a config that does not compose: an unknown option or key, a value of the wrong
    type, an override that does not parse. None for any other error."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(e, MissingConfigException):
        group, _, option = str(getattr(e, "missing_cfg_file", "") or "").rpartition("/")
        options = f"; choose one of {', '.join(e.options)}" if getattr(e, "options", None) else ""
        if group and option:
            return MGRError(f"{group}={option} is not an option of the {group} group{options}.")
        return MGRError(f"{' '.join(str(e).split())}{options}.")
    if isinstance(e, OverrideParseException):
        what = str(e).strip().splitlines()[0].rstrip(".")
        override = getattr(e, "override", None)
        return MGRError(f"{override} does not parse ({what}); overrides are key=value or group=option." if override
                        else f"An override does not parse ({what}); overrides are key=value or group=option.")
    cause = e.__cause__ if isinstance(e, ConfigCompositionException) else e
    if isinstance(cause, OmegaConfBaseException):
        return MGRError(_omegaconf_sentence(e, cause))
    if isinstance(e, ConfigCompositionException):
        text = " ".join(str(e).split())
        if "No match in the defaults list" in text and (group := re.search(r"Could not override '([^']+)'", text)):
            return MGRError(f"{group[1]} is not a config group of this command; --help lists its groups and options.")
        return MGRError(text)
    return None


def _omegaconf_sentence(e: BaseException, cause: BaseException) -> str:
    from omegaconf.errors import ConfigKeyError, ValidationError

    key = getattr(cause, "full_key", None) or "a setting"
    message = str(getattr(cause, "msg", None) or cause).strip().splitlines()[0]
    override = str(e).removeprefix("Error merging override ").strip() if str(e).startswith("Error merging") else None
    if isinstance(cause, ValidationError) and "could not be converted to" in message:
        kind = message.rsplit("could not be converted to", 1)[1].strip().rstrip(".")
        return f"{override or key} is not accepted: {key} takes {_kind_words(kind)}."
    if isinstance(cause, ConfigKeyError) or "not in" in message or "Could not override" in str(e):
        return (f"{key} is not a setting here ({message.rstrip('.')}); check its spelling (a setting that the config "
                f"file does not list is added with a +: +{key}=...).")
    return f"{override or key}: {message.rstrip('.')}."


def _kind_words(kind: str) -> str:
    return {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}.get(
        kind, kind)

"""mgr.data.sources: a registry over one module per source, no import cycle, and the
root handling every source shares (one sentence when data.root is unset or wrong)."""

from __future__ import annotations

import inspect
import os
import pkgutil
from pathlib import Path

import pytest

import mgr.data
from mgr import MGRError
from mgr.data import sources
from mgr.data.sources import SOURCES, Source, build_source
from test_layout import import_graph

OPTIONS = {"synth": {"tracks_per_class": 1}}  # what a source needs besides its root to be built


def package_modules(package) -> dict[str, Path]:
    """Every module of `package` and its subpackages, by name, with its file."""
    found = {package.__name__: Path(package.__file__)}
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        spec = info.module_finder.find_spec(info.name)
        found[info.name] = Path(spec.origin)
    return found


def test_the_registry_holds_every_source_and_no_source_imports_it():
    defined = {cls for name, path in package_modules(sources).items() if path.name != "__init__.py"
               for cls in vars(__import__(name, fromlist=["_"])).values()
               if inspect.isclass(cls) and issubclass(cls, Source) and cls is not Source}
    assert set(SOURCES.values()) == defined
    graph = import_graph()  # imports inside functions count too
    for name, path in package_modules(sources).items():
        if path.name != "__init__.py":
            assert "mgr.data.sources" not in graph[name], f"{name} imports the registry"


def test_build_source_names_the_choices_and_bad_options():
    with pytest.raises(MGRError, match=r"Unknown data.source='gtzn'; choose one of \['artist20', 'fma', 'folder'"):
        build_source("gtzn", "/music", {})
    with pytest.raises(MGRError, match="Bad data.source_options for data.source=gtzan: .*'size'"):
        build_source("gtzan", "/music", {"size": "small"})


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_without_a_root_says_so_and_how_to_get_the_data(name):
    source = build_source(name, None, OPTIONS.get(name, {}))
    with pytest.raises(MGRError, match=rf"^data.source={name} needs data.root=PATH; ") as caught:
        source.list()
    assert "\n" not in str(caught.value) and "None" not in str(caught.value)


@pytest.mark.parametrize("name", sorted(set(SOURCES) - {"synth"}))  # synth writes its dataset there
def test_every_source_with_a_missing_root_says_so_and_how_to_get_the_data(name, tmp_path):
    root = tmp_path / "nowhere"
    source = build_source(name, str(root), OPTIONS.get(name, {}))
    with pytest.raises(MGRError, match=rf"not found under data.root={root} \(which does not exist\); ") as caught:
        source.list()
    if source.download:
        first = "fma_metadata" if name == "fma" else source.download  # fma looks for its metadata first
        assert f"`python -m mgr.download dataset={first} root={root}`" in str(caught.value)
    assert str(caught.value).endswith(".") and "\n" not in str(caught.value)


def test_a_root_with_a_tilde_is_expanded_once_for_every_source():
    for name in SOURCES:
        assert build_source(name, "~/music", OPTIONS.get(name, {})).root == Path.home() / "music"


@pytest.mark.parametrize("kind", ["file", "FIFO"])
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_given_a_root_that_is_not_a_folder_says_so_in_one_sentence(name, kind, tmp_path):
    """Where a folder must be, a file or a FIFO is one sentence, not a NotADirectoryError traceback
    from writing or listing in it (the folder source reads a regular file as its manifest)."""
    if (name, kind) == ("folder", "file"):
        pytest.skip("a manifest")
    root = tmp_path / "not_a_folder"
    os.mkfifo(root) if kind == "FIFO" else root.write_text("a file")
    source = build_source(name, str(root), OPTIONS.get(name, {}))
    with pytest.raises(MGRError, match=rf"^data.root={root} is not a folder") as caught:
        source.list()
    assert str(caught.value).endswith(".") and "\n" not in str(caught.value)


def test_a_data_root_that_is_a_symlink_loop_is_one_sentence(tmp_path):
    from mgr.data import GenreDataModule

    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    datamodule = GenreDataModule(source="folder", root=str(loop), cache_dir=str(tmp_path / "cache"))  # no RuntimeError
    with pytest.raises(MGRError, match=rf"^data.root={loop} is not a folder or a CSV manifest"):
        datamodule.prepare_data()

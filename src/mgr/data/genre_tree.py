"""FMA's genre tree, read from `<root>/fma_metadata/genres.csv` (columns genre_id, #tracks, parent,
title, top_level; parent 0 marks a top-level genre), and the roll-up of a track's answers to it.

Genres are named by their title, as mgr's FMA classes are; a title that two genre ids share gets its
id in brackets ("Title (id)"), so that every name stands for one genre.

A model trained on a tree's genres carries the tree over its own classes in its checkpoint: its
`class_parents` hyperparameter (class name -> parent class name, None at the top), which
`GenreTree.class_parents` gives the data module. `ClassHierarchy` reads it for mgr.predict and the
test report:

- The level of a class is its depth: top-level genres 1, their children 2, and so on.
- The roll-up rule: a class's rolled-up probability is the max of its own and its descendants'; a
  class is answered when its own probability is at or above its threshold or any descendant is
  answered. So answers are consistent by construction: an answered class has every ancestor answered.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable

import torch

from mgr import MGRError

COLUMNS = ("genre_id", "parent", "title")


@dataclass(frozen=True)
class GenreTree:
    names: dict[int, str]          # genre id -> its name (title)
    parents: dict[int, int | None]  # genre id -> its parent's id; None for a top-level genre

    @classmethod
    def read(cls, path: Path) -> GenreTree:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not set(COLUMNS) <= set(reader.fieldnames or ()):
                raise MGRError(f"{path} lacks the columns {', '.join(COLUMNS)}; is it FMA's fma_metadata/genres.csv?")
            try:
                rows = [(int(r["genre_id"]), int(r["parent"]), r["title"].strip()) for r in reader]
            except (TypeError, ValueError):
                raise MGRError(f"{path} line {reader.line_num} has a genre_id or parent that is not a whole "
                               "number; restore FMA's fma_metadata/genres.csv.") from None
        shared = {t for t, n in Counter(t for _, _, t in rows).items() if n > 1}
        names = {g: f"{t} ({g})" if t in shared else t for g, _, t in rows}
        parents = {g: p or None for g, p, _ in rows}
        for g, p in parents.items():
            if p is not None and p not in names:
                raise MGRError(f"{path}: genre {g} has parent {p}, which the file does not list; restore FMA's "
                               "fma_metadata/genres.csv.")
        tree = cls(names, parents)
        for g in names:
            tree.ancestors(names[g])  # a loop in the parents fails here, not at the first roll-up
        return tree

    def name(self, genre_id: int) -> str:
        return self.names[genre_id]

    def parent(self, name: str) -> str | None:
        """The parent genre's name; None for a top-level genre."""
        if name not in self._ids:
            raise MGRError(f"{name!r} is not a genre of FMA's genres.csv.")
        p = self.parents[self._ids[name]]
        return None if p is None else self.names[p]

    def ancestors(self, name: str) -> list[str]:
        """The parent, its parent and so on up to the top level."""
        out, current = [], self.parent(name)
        while current is not None:
            if current in out or current == name:
                raise MGRError(f"FMA's genres.csv makes {name} its own ancestor; restore the file.")
            out.append(current)
            current = self.parent(current)
        return out

    def roll_up(self, answers: Iterable[str]) -> list[str]:
        """A track's answered genres and all their ancestors, each once, in the order first reached.

        The rule: a parent genre is answered when any of its children is answered (so a track answered
        Techno is answered Electronic too); a parent answered on its own stays, and no child is added.
        """
        out: dict[str, None] = {}
        for name in answers:
            out.update(dict.fromkeys([name, *self.ancestors(name)]))
        return list(out)

    def is_consistent(self, answers: Iterable[str]) -> bool:
        """Whether every answered genre's parent is answered too (what `roll_up` makes true)."""
        answered = set(answers)
        return all(self.parent(name) in answered for name in answered if self.parent(name) is not None)

    def class_parents(self, class_names: Iterable[str]) -> dict[str, str | None]:
        """Each class's parent among the classes: its nearest ancestor that is one of `class_names` (None:
        none is). With genres_all every ancestor of a track's genre is one of its labels, so this is the
        parent itself; the classes skip only a genre no track of the subset carries."""
        classes = set(class_names)
        return {name: next((a for a in self.ancestors(name) if a in classes), None) for name in class_names}

    @cached_property
    def _ids(self) -> dict[str, int]:
        return {name: g for g, name in self.names.items()}


@dataclass(frozen=True)
class ClassHierarchy:
    """The tree over a model's classes (`class_parents`: class name -> parent class name or None; see the
    module docstring for the levels and the roll-up rule). Classes are indexed as in `class_names`."""
    class_names: list[str]
    class_parents: dict[str, str | None]

    @cached_property
    def ancestors(self) -> list[list[int]]:
        """Each class's ancestors (indices), parent first."""
        index = {name: k for k, name in enumerate(self.class_names)}
        out = []
        for name in self.class_names:
            chain, current = [], self.class_parents.get(name)
            while current is not None:
                if index[current] in chain or current == name:
                    raise MGRError(f"The model's class_parents make {name} its own ancestor; retrain it on the data's "
                                   "own genre tree.")
                chain.append(index[current])
                current = self.class_parents.get(current)
            out.append(chain)
        return out

    @cached_property
    def levels(self) -> list[int]:
        """Each class's depth in the tree: 1 for a top-level class."""
        return [1 + len(chain) for chain in self.ancestors]

    @cached_property
    def subtrees(self) -> list[list[int]]:
        """Each class and its descendants (indices)."""
        out = [[k] for k in range(len(self.class_names))]
        for k, chain in enumerate(self.ancestors):
            for a in chain:
                out[a].append(k)
        return out

    def roll_up(self, probabilities: torch.Tensor, answered: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities [..., C] and answers [..., C] (booleans, at the thresholds) rolled up the tree: each
        class's the max of its subtree's probabilities, and answered where any class of its subtree is."""
        rolled = [(probabilities[..., s].amax(-1), answered[..., s].any(-1)) for s in self.subtrees]
        return torch.stack([p for p, _ in rolled], -1), torch.stack([a for _, a in rolled], -1)

    def is_consistent(self, answered: Iterable[bool]) -> bool:
        """Whether every answered class's parent is answered too (what `roll_up` makes true)."""
        answered = list(answered)
        return all(answered[chain[0]] for k, chain in enumerate(self.ancestors) if answered[k] and chain)


def rolled_answers(model, probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A multi-label model's probabilities [..., C] and its answers at its thresholds (`model.answered`),
    both rolled up its class tree where it has one (`model.class_parents`; the model by duck typing: the
    data layer imports nothing of mgr.models): what mgr.predict answers, and the test report and
    mgr.embed score."""
    answered = model.answered(probabilities)
    if not getattr(model, "class_parents", None):
        return probabilities, answered
    return ClassHierarchy(model.class_names, model.class_parents).roll_up(probabilities, answered)

"""The candidates of the `select` probe head (mgr.models.heads.ProbeSelectionHead) and the rule
that chooses one, as MARBLE (Yuan et al. 2023) and HEAR (Turian et al. 2022) run their probes:
every candidate is fitted on the training chunks' standardised embeddings of one layer and scored
on the validation chunks.

- `logistic`: scikit-learn's LogisticRegression (multinomial, L2) for each C of its grid, held as
  a Linear layer.
- `rbf_svm`: the RBF SVM head's grid (mgr.models.heads.RBFSVMHead, fitted and run by its own code).
- `mlp`: one hidden layer (MLPHead) for each learning rate of its grid: Adam on shuffled
  minibatches for at most `epochs` epochs, stopped when the validation loss has not improved for
  `patience` epochs, the weights of its lowest validation loss kept. Deterministic: its
  initialisation, dropout and shuffling draw from a generator seeded by the run's seed.

`choose` keeps the candidate of the highest validation track accuracy (the chunks combined as the
task combines them), then of the highest chunk accuracy (finer evidence from the same chunks: a
validation split of a few dozen tracks ties often); what still ties goes to the first in
`Candidate.order`: the simpler kind (logistic, then rbf_svm, then mlp), then the more regularised
setting (smaller C, then smaller gamma; for the MLP the smaller learning rate), then the lower layer
(a layer alone before its fusion with others).

Multi-label (task=multilabel: labels [N, C] of 0/1) is one binary problem per tag (one vs rest), as
the tagging literature fits its probes: a binary logistic regression per tag, the RBF SVM one binary
SVC per tag, the MLP trained with binary cross-entropy (and stopped on the validation one). A tag
without a positive or without a negative among the training chunks has nothing to learn: its logit is
the constant `constant_logit`. The candidates are then scored by the validation track macro PR-AUC
(average precision, the run's val/track_ap), ties by the track macro ROC-AUC (SCORES).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mgr import MGRError
from mgr.utils.strata import rarest_label

KINDS = ("logistic", "rbf_svm", "mlp")  # simpler first: the tie order
ABSENT_CLASS_LOGIT = -1e4  # a class the training chunks lack: never predicted by the logistic regression
MLP_BATCH = 256

# Validation logits -> two scores, higher better, the second breaking ties of the first (SCORES names them).
Scorer = Callable[[torch.Tensor], tuple[float, float]]
ScorerFor = Callable[[torch.Tensor, torch.Tensor], Scorer]  # (labels, tracks) of some chunks -> their Scorer
# What a Scorer gives, by task (multilabel or not), as metrics.json names a candidate's scores.
SCORES = {False: ("val_track_acc", "val_acc"), True: ("val_track_ap", "val_track_auc")}


def is_multilabel(y: torch.Tensor | np.ndarray) -> bool:
    """Whether labels `y` are multi-label rows [N, C] of 0/1 (else class indices [N])."""
    return y.ndim == 2


def learnable(column: np.ndarray) -> bool:
    """Whether a tag's 0/1 training labels hold a positive and a negative: something a binary fit can learn."""
    positives = int((column > 0.5).sum())
    return 0 < positives < len(column)


def constant_logit(column: np.ndarray) -> float:
    """The logit of a tag that is not `learnable`: the log-odds of its training prevalence, smoothed by half a
    chunk each way (what an intercept alone would fit, kept finite), so a validation chunk that carries a tag
    no training chunk did costs a finite binary cross-entropy, and the tag ranks no chunk above another."""
    positives = float((column > 0.5).sum())
    return math.log((positives + 0.5) / (len(column) - positives + 0.5))


def decisions_right(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The share of right decisions: the argmax class of each chunk, or (multi-label) each (chunk, tag) at
    logit 0."""
    if is_multilabel(y):
        return float(((logits > 0) == (y > 0.5)).float().mean())
    return float((logits.argmax(1) == y).float().mean())


@dataclass
class Fit:
    """One candidate fitted on one layer's training chunks: its kind, setting, its logits on the held-out
    chunks, and `build`, which returns its fitted module."""

    kind: str
    setting: dict
    logits: torch.Tensor
    build: Callable[[], nn.Module] = field(repr=False)
    details: dict = field(default_factory=dict)


class OutOfFold:
    """A candidate's logits on every chunk, each from the fold that held it out, and its MLP epochs."""

    def __init__(self, fit: Fit, n: int):
        self.kind, self.setting = fit.kind, dict(fit.setting)
        self.logits = fit.logits.new_zeros(n, fit.logits.shape[1])
        self.epochs: list[int] = []

    def add(self, held_out: np.ndarray, fit: Fit) -> None:
        self.logits[torch.as_tensor(held_out, device=self.logits.device)] = fit.logits
        if "epochs" in fit.details:
            self.epochs.append(fit.details["epochs"])

    def summary(self) -> dict:
        return {"epochs": float(np.mean(self.epochs))} if self.epochs else {}


def pooled(*parts: tuple) -> tuple[torch.Tensor, ...]:
    """(embeddings, labels, tracks, groups or None) of several splits as one: each split's track numbers
    moved past the previous ones' (a split numbers its tracks from 0); the groups as given (numbers the
    splits share), or, where a split has none, the tracks themselves."""
    xs, ys, tracks, offset = [], [], [], 0
    for x, y, t, _ in parts:
        xs.append(x), ys.append(y), tracks.append(t + offset)
        offset += int(t.max()) + 1 if len(t) else 0
    groups = [g for *_, g in parts]
    pooled_tracks = torch.cat(tracks)
    return (torch.cat(xs), torch.cat(ys), pooled_tracks,
            pooled_tracks if any(g is None for g in groups) else torch.cat(groups))


def grouped_folds(y: torch.Tensor, groups: torch.Tensor, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds of the chunks, a group's chunks (`groups`: a number per chunk) in one fold, each class
    spread over the folds as evenly as its groups allow (scikit-learn's StratifiedGroupKFold, shuffled
    with a fixed seed: every DDP rank gets the same folds); multi-label chunks by their `rarest_label`."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels, tracks = y.cpu().numpy(), groups.cpu().numpy()
    labels = rarest_label(labels) if is_multilabel(labels) else labels
    if len(np.unique(tracks)) < k:
        raise MGRError(f"model.head.folds={k} needs at least {k} training and validation tracks; there are "
                       f"{len(np.unique(tracks))}. Choose fewer folds, or folds=0 (the validation split).")
    with warnings.catch_warnings():  # a class with fewer tracks than folds: scikit-learn warns, the folds still hold
        warnings.simplefilter("ignore", UserWarning)
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=0)
        return list(splitter.split(np.zeros(len(labels)), labels, tracks))


def rank_of(scores: tuple[float, ...]) -> tuple[float, ...]:
    """A Scorer's scores as candidates are compared by them: a score that is nan (no tag of the validation
    chunks with a positive and a negative) below every other."""
    return tuple(-math.inf if math.isnan(s) else s for s in scores)


@dataclass
class Candidate:
    """One fitted candidate: its layer (position among the head's layers), kind and setting, its
    validation scores (a Scorer's, named by `score_names`: SCORES), and `build`, which returns its fitted
    module (standardised embeddings -> logits)."""

    layer: tuple[int, ...]  # the parts (positions among the head's layers) side by side: one, or a fusion
    kind: str
    setting: dict
    scores: tuple[float, float]
    build: Callable[[], nn.Module] = field(repr=False)
    details: dict = field(default_factory=dict)  # what else is worth reporting (an MLP's epochs)
    score_names: tuple[str, str] = SCORES[False]

    def order(self) -> tuple:
        return KINDS.index(self.kind), tuple(self.setting.values()), self.layer

    def rank(self) -> tuple[float, ...]:
        return rank_of(self.scores)

    def record(self, layer_names: list) -> dict:
        """Plain values for metrics.json: the layer by the encoder's number."""
        return {"layer": layer_label(layer_names, self.layer), "kind": self.kind, "setting": dict(self.setting),
                **dict(zip(self.score_names, self.scores)), **self.details}


def layer_label(layer_names: list, parts: tuple[int, ...]):
    """A candidate's input as metrics.json names it: the layer's name (the encoder's number), or the
    names of a fusion's parts joined by "+" ("6+descriptors")."""
    return layer_names[parts[0]] if len(parts) == 1 else "+".join(str(layer_names[i]) for i in parts)


def choose(candidates: list[Candidate]) -> Candidate:
    """The best candidate by the module docstring's rule."""
    ranked = sorted(candidates, key=Candidate.order)
    return max(ranked, key=Candidate.rank)  # max keeps the first of equal keys


def logistic_regressions(z: torch.Tensor, y: torch.Tensor, Cs: list[float], num_classes: int) -> list[nn.Linear]:
    """scikit-learn's L2 logistic regression of labels `y` on standardised embeddings `z` [N, D] for
    each C of `Cs` (ascending: each fit starts from the previous one's weights, a regularisation
    path), as Linear layers whose outputs are its logits (a binary fit's decision d as logits -d/2,
    d/2: the same probabilities). Multi-label rows `y` [N, C]: one binary regression per tag, its
    decision the tag's logit (`per_tag_logistic_regressions`)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from threadpoolctl import threadpool_limits

    x, labels = z.double().cpu().numpy(), y.cpu().numpy()
    # One BLAS thread: these products are small, and threads that wait for each other took 7x as long
    # on a 2-core machine with other work (3.7 s against 0.5 s for 6 C on 3000 x 753).
    with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
        # A loosely regularised fit may stop short of its optimum: it is still a candidate, judged on validation.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if is_multilabel(labels):
            return [linear.to(z.device) for linear in per_tag_logistic_regressions(x, labels, Cs)]
        fit, out = LogisticRegression(max_iter=1000, warm_start=True), []
        for c in Cs:
            fit.set_params(C=c).fit(x, labels)
            out.append(_as_linear(fit, num_classes).to(z.device))
    return out


def per_tag_logistic_regressions(x: np.ndarray, rows: np.ndarray, Cs: list[float]) -> list[nn.Linear]:
    """One binary logistic regression per tag (a column of `rows`) for each C of `Cs`, each tag on its own
    regularisation path, as one Linear layer per C (row k: tag k's weights and intercept); a tag that is not
    `learnable` gets zero weights and its `constant_logit`."""
    from sklearn.linear_model import LogisticRegression

    weight = np.zeros((len(Cs), rows.shape[1], x.shape[1]))
    bias = np.zeros((len(Cs), rows.shape[1]))
    for tag, column in enumerate(rows.T):
        if not learnable(column):
            bias[:, tag] = constant_logit(column)
            continue
        fit = LogisticRegression(max_iter=1000, warm_start=True)
        for i, c in enumerate(Cs):
            fit.set_params(C=c).fit(x, column > 0.5)
            weight[i, tag], bias[i, tag] = fit.coef_[0], fit.intercept_[0]
    return [_linear(w, b) for w, b in zip(weight, bias)]


def _as_linear(fit, num_classes: int) -> nn.Linear:
    weight = np.zeros((num_classes, fit.coef_.shape[1]))
    bias = np.full(num_classes, ABSENT_CLASS_LOGIT)
    if len(fit.classes_) == 2:
        half = np.array([-0.5, 0.5])
        weight[fit.classes_], bias[fit.classes_] = half[:, None] * fit.coef_[0], half * fit.intercept_[0]
    else:
        weight[fit.classes_], bias[fit.classes_] = fit.coef_, fit.intercept_
    return _linear(weight, bias)


def _linear(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    """A Linear layer holding `weight` [out, in] and `bias` [out]."""
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight))
        linear.bias.copy_(torch.as_tensor(bias))
    return linear


def train_mlp(make: Callable[[], nn.Module], z: torch.Tensor, y: torch.Tensor, z_val: torch.Tensor | None,
              y_val: torch.Tensor | None, lr: float, epochs: int, patience: int, seed: int) -> tuple[nn.Module, int]:
    """A module made by `make`, trained by Adam at `lr` on standardised embeddings `z` with early
    stopping on the validation loss (see the module docstring); returns it in eval mode with the
    weights of its best epoch, and that epoch (1-based). Without validation data (`z_val` None) it
    trains all `epochs` and keeps the last. The loss is the cross-entropy of class indices `y`, or
    of multi-label rows [N, C] the binary cross-entropy of each tag's sigmoid (the task's own)."""
    loss_of = F.binary_cross_entropy_with_logits if is_multilabel(y) else F.cross_entropy
    devices = [z.device] if z.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():  # the run's own random state is left as it was
        torch.manual_seed(seed)
        module = make().to(z.device)
        optimizer = torch.optim.Adam(module.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        best_loss, best_epoch = math.inf, 0
        best_state = {k: v.clone() for k, v in module.state_dict().items()}  # kept if no epoch improves (NaN)
        for epoch in range(1, epochs + 1):
            module.train()
            for batch in torch.randperm(len(z), generator=generator).split(MLP_BATCH):
                batch = batch.to(z.device)
                optimizer.zero_grad()
                loss_of(module(z[batch]), y[batch]).backward()
                optimizer.step()
            module.eval()
            with torch.no_grad():
                loss = -epoch if z_val is None else loss_of(module(z_val), y_val).item()
            if loss < best_loss:
                best_loss, best_epoch = loss, epoch
                best_state = {k: v.clone() for k, v in module.state_dict().items()}
            elif epoch - best_epoch >= patience:
                break
    module.load_state_dict(best_state)
    return module.eval(), best_epoch

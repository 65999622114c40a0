"""Output layers: embeddings [B, D] -> logits [B, n_classes].

`linear` and `mlp` are trained with the net by gradient descent. The SVM heads are fitted
in closed form (`fitted = True`): the task collects the training embeddings for
`passes` epochs, each with new random chunks, and fits after each epoch on all
collected so far, so every validation sees the SVM as it stands. With
`data.train_chunks_per_track=even` every epoch gives the same chunks (evaluation's,
as a classic baseline cuts its clips), so one pass is all there is to collect. The embeddings
are standardised first; the logits are the SVM's decision values, so the logged
loss is no probability loss. Their checkpoints are plain tensors.

- `linear_svm`: seed report 004's baseline with `model=stats_linear_svm
  feature=mfcc` (MFCC statistics, as Mandel & Ellis 2005 for artist20):
  scikit-learn's LinearSVC (one vs rest), its weights with the standardisation
  folded in become this Linear layer.
- `rbf_svm`: the strong classic baseline (`model=stats_rbf_svm
  feature=descriptors`): scikit-learn's SVC(kernel="rbf"), fitted for every C and
  gamma of its grids, then chosen on the validation chunks (`select`, see
  RBFSVMHead).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from mgr import MGRError

log = logging.getLogger(__name__)


class LinearHead(nn.Linear):
    fitted = False


class MLPHead(nn.Sequential):
    """One hidden layer (`model.head={name: mlp, hidden: 256, dropout: 0.2}`), as MARBLE's probes."""

    fitted = False

    def __init__(self, in_features: int, out_features: int, hidden: int = 256, dropout: float = 0.2):
        super().__init__(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_features))


class LinearSVMHead(nn.Linear):
    fitted = True

    def __init__(self, in_features: int, out_features: int, C: float = 1.0, passes: int = 4, max_iter: int = 10000):
        super().__init__(in_features, out_features)
        self.C, self.passes, self.max_iter = C, passes, max_iter
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fit on embeddings `x` [N, D] with labels `y`; returns the training accuracy."""
        from sklearn.svm import LinearSVC

        x, y = x.double().cpu().numpy(), y.cpu().numpy()
        mean, scale = standardisation(x)
        # A fixed random_state: every DDP rank fits the same SVM on the same gathered data.
        svm = LinearSVC(C=self.C, max_iter=self.max_iter, random_state=0).fit((x - mean) / scale, y)
        coef, intercept = np.zeros((self.out_features, x.shape[1])), np.zeros(self.out_features)
        if len(svm.classes_) == 2:  # one decision value: class b when positive
            coef[svm.classes_[1]], intercept[svm.classes_[1]] = svm.coef_[0], svm.intercept_[0]
            coef[svm.classes_[0]], intercept[svm.classes_[0]] = -svm.coef_[0], -svm.intercept_[0]
        else:  # classes missing from the training data keep zero weights
            coef[svm.classes_], intercept[svm.classes_] = svm.coef_, svm.intercept_
        # w . (x - mean) / scale + b  ==  (w / scale) . x + (b - w . mean / scale)
        self.weight.copy_(torch.as_tensor(coef / scale, dtype=self.weight.dtype))
        self.bias.copy_(torch.as_tensor(intercept - (coef / scale) @ mean, dtype=self.bias.dtype))
        accuracy = float(svm.score((x - mean) / scale, y))
        log.info("Linear SVM fitted on %d training chunks: training accuracy %.3f.", len(y), accuracy)
        return accuracy


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's StandardScaler of `x` [N, D]: its mean and scale, 1 where a column is constant."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


class RBFSVMHead(nn.Module):
    """An RBF-kernel SVM (scikit-learn's SVC, one vs one) on standardised embeddings, its C and
    gamma chosen on validation data, as benchmarks/realmusic.py's reference chooses them.

    `fit(x, y)` fits one SVC for every pair of the grids `C` x `gamma`; `select(x_val, y_val)`
    keeps the one of best validation accuracy (ties: the smaller C, then the smaller gamma:
    the more regularised). The task calls `select` with the validation chunks' embeddings
    before it scores them, so every validation scores the SVM it chose; until then (a run that
    never validates) the head holds the grid's first, most regularised SVM.

    The forward is the SVM's decision function in torch, from tensors in the state dict (the
    standardisation, support vectors, per-pair dual coefficients and intercepts, gamma): the
    one-vs-one decision values, reduced per class as scikit-learn's decision_function_shape=
    "ovr" (the votes each class wins, plus its summed confidence squashed into (-1/3, 1/3) to
    break ties). A track's score is the mean of its chunks' (mean_logits), as the reference's.
    The number of support vectors is known only once fitted: loading resizes those buffers.
    """

    fitted = True
    RESIZED = ("support_vectors", "pair_coef", "intercept", "pairs")

    def __init__(self, in_features: int, out_features: int, C: float | list[float] = 1.0,
                 gamma: float | list[float] = 0.01, passes: int = 1):
        super().__init__()
        self.in_features, self.out_features, self.passes = in_features, out_features, passes
        self.C_grid = sorted(float(c) for c in np.atleast_1d(C))
        self.gamma_grid = sorted(float(g) for g in np.atleast_1d(gamma))
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        self.register_buffer("support_vectors", torch.zeros(0, in_features))  # standardised, [n_sv, D]
        self.register_buffer("pair_coef", torch.zeros(0, 0))  # [n_sv, n_pairs]: each pair's dual coefficients
        self.register_buffer("intercept", torch.zeros(0))  # [n_pairs]
        self.register_buffer("pairs", torch.zeros(0, 2, dtype=torch.long))  # the classes (i, j) of each pair
        self.register_buffer("gamma", torch.tensor(0.0))
        self.register_buffer("chosen_C", torch.tensor(0.0))  # not needed to predict: kept to report
        self._candidates: list[tuple[float, float, object]] = []  # (C, gamma, fitted SVC), until select

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fit the grid on embeddings `x` [N, D] with labels `y`; returns the first SVM's training accuracy."""
        from sklearn.svm import SVC

        x, y = x.double().cpu().numpy(), y.cpu().numpy()
        mean, scale = standardisation(x)
        self.mean.copy_(torch.as_tensor(mean))
        self.scale.copy_(torch.as_tensor(scale))
        z = (x - mean) / scale
        # libsvm is deterministic without probability estimates: every DDP rank fits the same SVMs.
        self._candidates = [(c, g, SVC(C=c, gamma=g, kernel="rbf").fit(z, y)) for c in self.C_grid for g in self.gamma_grid]
        self._load(*self._candidates[0])
        accuracy = float(self._candidates[0][2].score(z, y))
        log.info("RBF SVMs fitted on %d training chunks for %d C x %d gamma.", len(y), len(self.C_grid), len(self.gamma_grid))
        return accuracy

    @torch.no_grad()
    def select(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Keep the fitted SVM of best accuracy on validation embeddings `x` with labels `y`; returns it."""
        if not self._candidates:
            raise RuntimeError("RBFSVMHead.select needs fit first.")
        z = ((x.double().cpu() - self.mean.double().cpu()) / self.scale.double().cpu()).numpy()
        y = y.cpu().numpy()
        best = None
        for c, gamma, svm in self._candidates:  # C, then gamma, ascending: a tie keeps the earlier one
            accuracy = float((svm.predict(z) == y).mean())
            if best is None or accuracy > best[0]:
                best = (accuracy, c, gamma, svm)
        accuracy, c, gamma, svm = best
        self._load(c, gamma, svm)
        self._candidates = []
        log.info("RBF SVM chosen on %d validation chunks: C=%g, gamma=%g (validation accuracy %.3f, %d support "
                 "vectors).", len(y), c, gamma, accuracy, len(svm.support_))
        return accuracy

    def _load(self, c: float, gamma: float, svm) -> None:
        """The fitted SVC as this head's tensors (see the class docstring)."""
        classes, n_support = svm.classes_, svm.n_support_
        first = np.concatenate([[0], np.cumsum(n_support)])  # support vectors are grouped by class
        pairs = [(a, b) for a in range(len(classes)) for b in range(a + 1, len(classes))]
        coef = np.zeros((len(svm.support_vectors_), len(pairs)))
        for p, (a, b) in enumerate(pairs):  # libsvm's layout of dual_coef_ [n_classes - 1, n_sv]
            coef[first[a]:first[a + 1], p] = svm.dual_coef_[b - 1, first[a]:first[a + 1]]
            coef[first[b]:first[b + 1], p] = svm.dual_coef_[a, first[b]:first[b + 1]]
        intercept = svm.intercept_
        if len(classes) == 2:  # scikit-learn flips the sign of a binary SVC: positive means classes_[1]
            coef, intercept = -coef, -intercept
        device = self.mean.device
        self.support_vectors = torch.as_tensor(svm.support_vectors_, dtype=torch.float32, device=device)
        self.pair_coef = torch.as_tensor(coef, dtype=torch.float32, device=device)
        self.intercept = torch.as_tensor(intercept, dtype=torch.float32, device=device)
        self.pairs = torch.as_tensor(classes[np.asarray(pairs, dtype=int).reshape(-1, 2)], dtype=torch.long,
                                     device=device)
        self.gamma.fill_(gamma)
        self.chosen_C.fill_(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = (x.float() - self.mean) / self.scale
            sv = self.support_vectors
            distances = (z.square().sum(1, keepdim=True) + sv.square().sum(1) - 2 * z @ sv.T).clamp(min=0)
            decision = torch.exp(-self.gamma * distances) @ self.pair_coef + self.intercept  # > 0: the pair's first
            first, second = self.pairs[:, 0], self.pairs[:, 1]
            votes = z.new_zeros(len(z), self.out_features)
            votes.index_add_(1, first, (decision >= 0).float()).index_add_(1, second, (decision < 0).float())
            confidence = z.new_zeros(len(z), self.out_features)
            confidence.index_add_(1, first, decision).index_add_(1, second, -decision)
            return votes + confidence / (3 * (confidence.abs() + 1))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.RESIZED:  # sized by the fitted SVM: take the checkpoint's shapes
            if prefix + name in state_dict:
                old = self._buffers[name]
                self._buffers[name] = old.new_empty(state_dict[prefix + name].shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


HEADS = {"linear": LinearHead, "mlp": MLPHead, "linear_svm": LinearSVMHead, "rbf_svm": RBFSVMHead}


def build_head(settings: dict | None, embedding_dim: int, num_classes: int) -> nn.Module:
    settings = dict(settings or {"name": "linear"})
    name = settings.pop("name", "linear")
    if name not in HEADS:
        raise MGRError(f"Unknown model.head.name={name!r}; choose one of {', '.join(HEADS)}.")
    return HEADS[name](embedding_dim, num_classes, **settings)

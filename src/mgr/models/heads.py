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
- `select`: the probe's default (`model=probe`), ProbeSelectionHead: logistic regressions, RBF SVMs
  and MLPs on each layer of a pretrained encoder, the candidate and layer chosen on validation
  (mgr.models.probe_selection).

Under task=multilabel (labels [N, C] of 0/1) the SVM heads fit one binary SVM per tag, its decision
value the tag's logit; a tag without a positive or a negative training chunk gets a constant logit
(mgr.models.probe_selection.constant_logit).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from functools import partial

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mgr import MGRError
from mgr.encoders.pretrained import DESCRIPTORS
from mgr.models.probe_selection import (SCORES, Candidate, Fit, OutOfFold, Scorer, ScorerFor, choose,
                                        constant_logit, decisions_right, grouped_folds, is_multilabel, layer_label,
                                        learnable, logistic_regressions, pooled, rank_of, train_mlp)

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
        """Fit on embeddings `x` [N, D] with labels `y` (class indices, or multi-label rows [N, C] of 0/1: one
        binary SVM per tag, its decision value the tag's logit); returns the share of right decisions."""
        x, y = x.double().cpu().numpy(), y.cpu().numpy()
        mean, scale = standardisation(x)
        z = (x - mean) / scale
        coef, intercept = (self._per_tag if is_multilabel(y) else self._one_vs_rest)(z, y)
        # w . (x - mean) / scale + b  ==  (w / scale) . x + (b - w . mean / scale)
        self.weight.copy_(torch.as_tensor(coef / scale, dtype=self.weight.dtype))
        self.bias.copy_(torch.as_tensor(intercept - (coef / scale) @ mean, dtype=self.bias.dtype))
        accuracy = decisions_right(torch.as_tensor(z @ coef.T + intercept), torch.as_tensor(y))
        log.info("Linear SVM fitted on %d training chunks: training accuracy %.3f%s.", len(y), accuracy,
                 " (of every chunk's decision on every tag)" if is_multilabel(y) else "")
        return accuracy

    def _svm(self, z: np.ndarray, y: np.ndarray):
        from sklearn.svm import LinearSVC

        # A fixed random_state: every DDP rank fits the same SVM on the same gathered data.
        return LinearSVC(C=self.C, max_iter=self.max_iter, random_state=0).fit(z, y)

    def _one_vs_rest(self, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """scikit-learn's multi-class LinearSVC (one vs rest) of class indices `y`: its weights and intercepts."""
        svm = self._svm(z, y)
        coef, intercept = np.zeros((self.out_features, z.shape[1])), np.zeros(self.out_features)
        if len(svm.classes_) == 2:  # one decision value: class b when positive
            coef[svm.classes_[1]], intercept[svm.classes_[1]] = svm.coef_[0], svm.intercept_[0]
            coef[svm.classes_[0]], intercept[svm.classes_[0]] = -svm.coef_[0], -svm.intercept_[0]
        else:  # classes missing from the training data keep zero weights
            coef[svm.classes_], intercept[svm.classes_] = svm.coef_, svm.intercept_
        return coef, intercept

    def _per_tag(self, z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A binary LinearSVC per tag of multi-label `rows`: positive decision values mean the tag; a tag that is
        not `learnable` gets zero weights and its `constant_logit`."""
        coef, intercept = np.zeros((self.out_features, z.shape[1])), np.zeros(self.out_features)
        for tag, column in enumerate(rows.T):
            if not learnable(column):
                intercept[tag] = constant_logit(column)
                continue
            svm = self._svm(z, column > 0.5)
            coef[tag], intercept[tag] = svm.coef_[0], svm.intercept_[0]
        return coef, intercept


def rbf_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma |a_i - b_j|^2) [len(a), len(b)], computed as libsvm computes it."""
    distances = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-gamma * np.maximum(distances, 0.0))


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's StandardScaler of `x` [N, D]: its mean and scale, 1 where a column is constant."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


class RBFSVMHead(nn.Module):
    """An RBF-kernel SVM (scikit-learn's SVC, one vs one) on standardised embeddings, its C and
    gamma chosen on validation data, as benchmarks/suite/reference.py chooses them.

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

    Multi-label rows `y` [N, C] of 0/1 (task=multilabel): one binary SVC per tag for each C and gamma
    (`per_tag`), their support vectors pooled, each tag's dual coefficients a column of `pair_coef`; the
    forward is each tag's decision value, its logit. A tag that is not `learnable` has no SVC: its
    constant_logit as intercept. `select` then chooses by the task's scorer of the logits (its validation
    track macro PR-AUC, then ROC-AUC).
    """

    fitted = True
    RESIZED = ("support_vectors", "pair_coef", "intercept", "pairs")
    PRECOMPUTED_MAX = 8000  # training chunks up to which fit computes the kernel matrix itself (8 bytes a pair: 512 MB)

    def __init__(self, in_features: int, out_features: int, C: float | list[float] = 1.0,
                 gamma: float | list[float] = 0.01, passes: int = 1, precompute: bool = False, verbose: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.passes = in_features, out_features, passes
        self.precompute = precompute  # see fit
        self.verbose = verbose  # a line in the run's log per fit (the probe's grid, one fit per layer: none)
        self.C_grid = sorted(float(c) for c in np.atleast_1d(C))
        self.gamma_grid = sorted(float(g) for g in np.atleast_1d(gamma))
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        self.register_buffer("support_vectors", torch.zeros(0, in_features))  # standardised, [n_sv, D]
        self.register_buffer("pair_coef", torch.zeros(0, 0))  # [n_sv, n_pairs]: each pair's (tag's) dual coefficients
        self.register_buffer("intercept", torch.zeros(0))  # [n_pairs]
        self.register_buffer("pairs", torch.zeros(0, 2, dtype=torch.long))  # the classes (i, j) of each pair
        self.register_buffer("gamma", torch.tensor(0.0))
        self.register_buffer("chosen_C", torch.tensor(0.0))  # not needed to predict: kept to report
        self.register_buffer("per_tag", torch.tensor(False))  # multi-label: one binary SVC per tag
        self._candidates: list[tuple[float, float, object]] = []  # (C, gamma, fitted SVC or per-tag SVCs), until select
        self._training: np.ndarray | None = None  # the standardised training chunks, until then

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fit the grid on embeddings `x` [N, D] with labels `y` (class indices, or multi-label rows [N, C]);
        returns the first SVM's share of right decisions on them."""
        x, y = x.double().cpu().numpy(), y.cpu().numpy()
        mean, scale = standardisation(x)
        self.mean.copy_(torch.as_tensor(mean))
        self.scale.copy_(torch.as_tensor(scale))
        self.per_tag.fill_(is_multilabel(y))
        z = (x - mean) / scale
        self._training = z
        # precompute: the kernel matrix, where it fits in memory, once per gamma by BLAS; libsvm's own
        # loop takes ~50x longer, per SVM. libsvm's formula, but other roundings: the SVMs agree only to
        # libsvm's tolerance (decision values to ~1e-4), so the classic baseline keeps libsvm's kernel.
        precomputed = self.precompute and len(z) <= self.PRECOMPUTED_MAX
        kernels = {g: rbf_kernel(z, z, g) for g in self.gamma_grid} if precomputed else {}
        fit = partial(self._fit_per_tag if self.per_tag else self._fit_one, z, y, kernels)
        self._candidates = [(c, g, fit(c, g)) for c in self.C_grid for g in self.gamma_grid]
        self._load(*self._candidates[0])
        if self.per_tag:
            accuracy = decisions_right(self._logits(torch.as_tensor(x, dtype=torch.float32)).cpu(), torch.as_tensor(y))
        else:  # libsvm's votes
            accuracy = float((self._predict(self._candidates[0], z) == y).mean())
        log.log(logging.INFO if self.verbose else logging.DEBUG, "RBF SVMs fitted on %d training chunks for %d C x %d "
                "gamma%s.", len(y), len(self.C_grid), len(self.gamma_grid),
                f", one per tag of {y.shape[1]}" if self.per_tag else "")
        return accuracy

    @staticmethod
    def _fit_one(z: np.ndarray, y: np.ndarray, kernels: dict, c: float, gamma: float):
        """One SVC of class indices `y` (on the precomputed kernel of `gamma` where `kernels` holds it)."""
        from sklearn.svm import SVC

        # libsvm is deterministic without probability estimates: every DDP rank fits the same SVMs.
        return SVC(C=c, kernel="precomputed").fit(kernels[gamma], y) if kernels else \
            SVC(C=c, gamma=gamma, kernel="rbf").fit(z, y)

    @classmethod
    def _fit_per_tag(cls, z: np.ndarray, rows: np.ndarray, kernels: dict, c: float, gamma: float) -> list:
        """A binary SVC per tag of multi-label `rows` (positive decision values: the tag), or, for a tag that is
        not `learnable`, its constant_logit."""
        return [cls._fit_one(z, column > 0.5, kernels, c, gamma) if learnable(column) else constant_logit(column)
                for column in rows.T]

    @torch.no_grad()
    def select(self, x: torch.Tensor, y: torch.Tensor, score: Scorer | None = None) -> float:
        """Keep the fitted SVM of best score on validation embeddings `x` with labels `y`: the chunk accuracy,
        or `score` of its logits (a Scorer: the task's, which multi-label SVMs need); returns it."""
        if not self._candidates:
            raise RuntimeError("RBFSVMHead.select needs fit first.")
        if self.per_tag and score is None:
            raise RuntimeError("RBFSVMHead.select of per-tag SVMs needs the task's scorer.")
        z = ((x.double().cpu() - self.mean.double().cpu()) / self.scale.double().cpu()).numpy()
        best = None
        for candidate in self._candidates:  # C, then gamma, ascending: a tie keeps the earlier one
            if score is None:
                result = (float((self._predict(candidate, z) == y.cpu().numpy()).mean()),)
            else:
                self._load(*candidate)
                result = rank_of(score(self._logits(x)))
            if best is None or result > best[0]:
                best = (result, candidate)
        result, (c, gamma, svm) = best
        self._load(c, gamma, svm)
        self._candidates, self._training = [], None
        log.info("RBF SVM chosen on %d validation chunks: C=%g, gamma=%g (validation %s %.3f, %d support "
                 "vectors).", len(y), c, gamma, "accuracy" if score is None else "score", result[0],
                 len(self.support_vectors))
        return result[0]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """The forward of many chunks, a few thousand at a time: each needs a kernel row per support vector."""
        return torch.cat([self(part.to(self.mean.device)) for part in x.split(4096)])

    def candidates(self) -> Iterator[dict]:
        """Load each fitted SVM of the grid in turn (C, then gamma, ascending) and yield its setting,
        for a caller that scores them itself (ProbeSelectionHead); then `keep` one."""
        for c, gamma, svm in self._candidates:
            self._load(c, gamma, svm)
            yield {"C": c, "gamma": gamma}

    def keep(self, setting: dict) -> "RBFSVMHead":
        """Hold the fitted SVM of `setting` (one that `candidates` yielded) and drop the others."""
        self._load(*next(t for t in self._candidates if (t[0], t[1]) == (setting["C"], setting["gamma"])))
        self._candidates, self._training = [], None
        return self

    def _predict(self, candidate: tuple, z: np.ndarray) -> np.ndarray:
        """The classes a fitted (C, gamma, SVC) predicts for standardised `z` (libsvm's votes)."""
        _, gamma, svm = candidate
        return svm.predict(rbf_kernel(z, self._training, gamma) if svm.kernel == "precomputed" else z)

    def _load(self, c: float, gamma: float, svm) -> None:
        """The fitted SVC (or per-tag SVCs) as this head's tensors (see the class docstring)."""
        tensors = self._per_tag_tensors if self.per_tag else self._pair_tensors
        support_vectors, coef, intercept, pairs = tensors(svm)
        device = self.mean.device
        self.support_vectors = torch.as_tensor(support_vectors, dtype=torch.float32, device=device)
        self.pair_coef = torch.as_tensor(coef, dtype=torch.float32, device=device)
        self.intercept = torch.as_tensor(intercept, dtype=torch.float32, device=device)
        self.pairs = torch.as_tensor(pairs, dtype=torch.long, device=device)
        self.gamma.fill_(gamma)
        self.chosen_C.fill_(c)

    def _pair_tensors(self, svm) -> tuple[np.ndarray, ...]:
        """A one-vs-one SVC's support vectors, per-pair dual coefficients, intercepts and pairs of classes."""
        classes, n_support = svm.classes_, svm.n_support_
        support_vectors = self._training[svm.support_]
        first = np.concatenate([[0], np.cumsum(n_support)])  # support vectors are grouped by class
        pairs = [(a, b) for a in range(len(classes)) for b in range(a + 1, len(classes))]
        coef = np.zeros((len(support_vectors), len(pairs)))
        for p, (a, b) in enumerate(pairs):  # libsvm's layout of dual_coef_ [n_classes - 1, n_sv]
            coef[first[a]:first[a + 1], p] = svm.dual_coef_[b - 1, first[a]:first[a + 1]]
            coef[first[b]:first[b + 1], p] = svm.dual_coef_[a, first[b]:first[b + 1]]
        intercept = svm.intercept_
        if len(classes) == 2:  # scikit-learn flips the sign of a binary SVC: positive means classes_[1]
            coef, intercept = -coef, -intercept
        return support_vectors, coef, intercept, classes[np.asarray(pairs, dtype=int).reshape(-1, 2)]

    def _per_tag_tensors(self, svms: list) -> tuple[np.ndarray, ...]:
        """Per-tag binary SVCs (or constant logits) as one set of support vectors (every tag's, pooled), a column
        of dual coefficients per tag and a tag's intercept: scikit-learn's decision_function, positive: the tag."""
        fitted = [svm for svm in svms if not isinstance(svm, float)]
        support = np.unique(np.concatenate([svm.support_ for svm in fitted])) if fitted else np.zeros(0, dtype=int)
        coef, intercept = np.zeros((len(support), len(svms))), np.zeros(len(svms))
        for tag, svm in enumerate(svms):
            if isinstance(svm, float):
                intercept[tag] = svm
            else:
                coef[np.searchsorted(support, svm.support_), tag] = svm.dual_coef_[0]
                intercept[tag] = svm.intercept_[0]
        return self._training[support], coef, intercept, np.zeros((0, 2), dtype=int)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = (x.float() - self.mean) / self.scale
            sv = self.support_vectors
            distances = (z.square().sum(1, keepdim=True) + sv.square().sum(1) - 2 * z @ sv.T).clamp(min=0)
            decision = torch.exp(-self.gamma * distances) @ self.pair_coef + self.intercept  # > 0: the pair's first
            if self.per_tag:  # each tag's own decision value
                return decision
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
        # Checkpoints written before multi-label SVMs hold one-vs-one SVMs only. (The dict is load_state_dict's
        # own copy: the caller's stays as it was.)
        state_dict.setdefault(prefix + "per_tag", torch.tensor(False))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ProbeSelectionHead(nn.Module):
    """`select`, the default head of `model=probe`: a probe as MARBLE and HEAR run one. On each of
    its layers (the encoder's `embedding_layers`: all of them with encoder.layer=all, or the
    `layers` named), standardised by the training chunks' mean and scale, it fits the candidates of
    mgr.models.probe_selection (logistic regression over the grid `C`, the RBF SVM over `svm_C` x
    `svm_gamma` (gamma in units of 1 / the layer's width, scikit-learn's gamma="scale" for
    standardised embeddings), an MLP over `mlp_lr`; an empty grid leaves a kind out) and keeps the
    one of best validation track accuracy (its `choose`). `fuse` names layers (the encoder's
    `descriptors`, say) that are also joined to every other layer: each such fusion is one more
    candidate input, its parts side by side, every column standardised, so the choice between a
    layer alone and its fusion is made on validation as every other choice is. By default (`fuse`
    null) it fuses the encoder's `descriptors` (which the encoder then computes: its
    `descriptors=auto`); `fuse: []` fuses nothing. Fusion is the default because it was the best
    probe on the real-music suite (benchmarks/RESULTS.md, "Fusion").

    The task calls `fit` with the training chunks' embeddings (one pass: cached chunks are the same
    every epoch), then `select` with the validation chunks' and a scorer of validation logits (the
    task's track metric). Until then (a run that never validates) the head holds the first
    logistic regression of the grid on its first layer.

    Under task=multilabel (labels [N, C] of 0/1) every candidate is one binary problem per tag (one vs
    rest, mgr.models.probe_selection: a binary logistic regression per tag, a binary RBF SVC per tag, the
    MLP on binary cross-entropy), its outputs per-tag logits for the task's sigmoid, temperatures and
    thresholds, and the choice is by the validation track macro PR-AUC (the run's val/track_ap), then
    macro ROC-AUC; `folds` stratify a chunk by its rarest label.

    The state dict holds the chosen layer's standardisation (`mean`, `scale`), the chosen candidate
    (`chosen`: a Linear, an MLPHead or an RBFSVMHead on standardised embeddings) and, as the extra
    state, the choice and the grid's scores (`report`, for metrics.json): plain tensors and values
    that loading rebuilds the head from.
    """

    fitted = True
    passes = 1
    per_layer = True  # build_head gives it the encoder's embedding_layers
    selects_by_track = True  # the task gives select a scorer of validation logits

    def __init__(self, in_features: int, out_features: int, embedding_layers: list | None = None,
                 C: list[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), svm_C: list[float] = (1.0, 10.0, 100.0),
                 svm_gamma: list[float] = (1.0,), mlp_lr: list[float] = (3e-4, 1e-3, 3e-3), mlp_hidden: int = 256,
                 mlp_dropout: float = 0.2, mlp_epochs: int = 50, mlp_patience: int = 5, layers: list | None = None,
                 fuse: list | None = None, folds: int = 0, svm_max_chunks: int = RBFSVMHead.PRECOMPUTED_MAX):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        layers_given = embedding_layers or [("embedding", in_features)]
        self.embedding_layers = [(name, int(width)) for name, width in layers_given]
        widths = [width for _, width in self.embedding_layers]
        assert sum(widths) == in_features, f"layers of widths {widths} make no embedding of {in_features}"
        self.offsets = [int(o) for o in np.cumsum([0, *widths[:-1]])]
        self.layer_names = [name for name, _ in self.embedding_layers]
        singles = list(range(len(widths))) if layers is None else self._positions(list(layers))
        if fuse is None:  # the default: the descriptor statistics where the embedding holds them
            fuse = [DESCRIPTORS] if DESCRIPTORS in self.layer_names else []
        self.candidate_layers = self._fused(singles, self._positions(list(fuse), "fuse") if fuse else [])
        self.C, self.svm_C, self.svm_gamma, self.mlp_lr = (sorted(map(float, g)) for g in (C, svm_C, svm_gamma, mlp_lr))
        self.mlp = {"hidden": int(mlp_hidden), "dropout": float(mlp_dropout)}
        self.mlp_epochs, self.mlp_patience = int(mlp_epochs), int(mlp_patience)
        if isinstance(folds, bool) or not isinstance(folds, int) or folds == 1 or folds < 0:
            raise MGRError(f"model.head.folds={folds}: give 0 (choose on the validation split) or k >= 2 (k-fold "
                           "cross-validation over the training and validation tracks).")
        self.folds = folds
        # An SVC's fit grows with the square of its chunks (and beyond this its kernel matrix is not
        # precomputed): on more training chunks the grid leaves the RBF SVM out and says so (`select`).
        self.svm_max_chunks = int(svm_max_chunks)
        self._svm_fits = True
        if not (self.C or self.svm_C and self.svm_gamma or self.mlp_lr):
            raise MGRError("model.head=select has no candidate: give at least one of C, svm_C with svm_gamma, mlp_lr.")
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("scale", torch.ones(0))
        self.report: dict = {}  # the grid's scores and the choice, once chosen
        self._hold(self.candidate_layers[0], "logistic", {"C": self.C[0] if self.C else 1.0})
        self._training: tuple | None = None  # the training chunks' embeddings, labels, tracks, groups (or None)

    def _positions(self, names: list, key: str = "layers") -> list[int]:
        unknown = [n for n in names if n not in self.layer_names]
        if unknown or not names:
            raise MGRError(f"model.head.{key}={names} names layers the embedding does not hold; it holds "
                           f"{self.layer_names} (encoder.layer=all holds every layer of the encoder; "
                           "encoder.descriptors=true adds `descriptors`).")
        return sorted(self.layer_names.index(n) for n in names)

    @staticmethod
    def _fused(singles: list[int], fused: list[int]) -> list[tuple[int, ...]]:
        """The candidate inputs: each layer alone, and each layer that is not fused joined with the
        fused ones (`fuse`), a candidate's parts side by side, each column standardised."""
        joined = [(layer, *fused) for layer in singles if layer not in fused] if fused else []
        return sorted([(layer,) for layer in singles] + joined)

    def _hold(self, layer: tuple[int, ...], kind: str, setting: dict, module: nn.Module | None = None,
              standardisation: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Make a candidate the head's: its fitted `module` and standardisation, or (to load a checkpoint
        into) a blank module of its kind and shape. `layer`: the candidate's parts (positions)."""
        layer = (layer,) if isinstance(layer, int) else tuple(layer)  # checkpoints before fusion held one int
        width, device = sum(self.embedding_layers[part][1] for part in layer), self.mean.device
        if module is None:
            blank = {"logistic": LinearHead, "rbf_svm": RBFSVMHead, "mlp": partial(MLPHead, **self.mlp)}[kind]
            module = blank(width, self.out_features)
        mean, scale = standardisation or (np.zeros(width), np.ones(width))
        self.layer, self.kind, self.setting, self.chosen = layer, kind, dict(setting), module.to(device)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device)
        self.scale = torch.as_tensor(scale, dtype=torch.float32, device=device)

    def _part(self, x: torch.Tensor, layer: tuple[int, ...]) -> torch.Tensor:
        """The parts `layer` (positions) of embeddings [N, in_features], side by side."""
        return torch.cat([x[:, self.offsets[i]:self.offsets[i] + self.embedding_layers[i][1]] for i in layer], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.chosen((self._part(x, self.layer).float() - self.mean) / self.scale)

    def fit(self, x: torch.Tensor, y: torch.Tensor, tracks: torch.Tensor | None = None,
            groups: torch.Tensor | None = None) -> float:
        """Keep the training embeddings `x` [N, in_features], labels `y` (class indices, or multi-label rows
        [N, C] of 0/1), tracks and the tracks' groups (see `select`) for `select`, and hold the first logistic
        regression (see the class docstring); returns its share of right decisions on them."""
        with torch.inference_mode(False):  # called in validation: modules made here must load and train later
            tracks = torch.arange(len(y)) if tracks is None else tracks  # each chunk its own track
            y = y.float() if is_multilabel(y) else y  # binary cross-entropy takes float targets
            self._training = x.float().clone(), y.clone(), tracks.clone(), None if groups is None else groups.clone()
            if not self.C:
                return math.nan
            z, scaler = self._standardised(self._training[0], self.candidate_layers[0])
            (linear,) = logistic_regressions(z, self._training[1], self.C[:1], self.out_features)
            self._hold(self.candidate_layers[0], "logistic", {"C": self.C[0]}, linear, scaler)
            with torch.no_grad():
                return decisions_right(linear(z), self._training[1])

    def _standardised(self, x: torch.Tensor, layer: tuple[int, ...], scaler=None) -> tuple[torch.Tensor, tuple]:
        """Layer `layer` of `x` standardised by `scaler` (mean, scale), by default the statistics of `x` itself."""
        part = self._part(x, layer).double()
        mean, scale = scaler or standardisation(part.cpu().numpy())
        return ((part - torch.as_tensor(mean, device=x.device)) / torch.as_tensor(scale, device=x.device)).float(), \
            (mean, scale)

    def select(self, x: torch.Tensor, y: torch.Tensor, tracks: torch.Tensor, scorer_for: ScorerFor,
               groups: torch.Tensor | None = None) -> float:
        """Choose among the candidates fitted on the kept training embeddings, by their scores (`scorer_for`
        of labels and tracks gives a Scorer) on the validation embeddings `x`, labels `y` and `tracks`
        (`folds=0`), or on the held-out folds of both (`folds>=2`: a fold holds out whole groups, the
        data's `groups` of tracks (numbers shared across the splits) where given, else whole tracks);
        hold the best and return its score."""
        if self._training is None:
            raise RuntimeError("ProbeSelectionHead.select needs fit first.")
        with torch.inference_mode(False):
            y = y.float() if is_multilabel(y) else y
            val = x.float().clone(), y.clone(), tracks.clone(), None if groups is None else groups.clone()
            names = SCORES[is_multilabel(y)]
            fitted_on = len(self._training[1]) + (len(y) if self.folds else 0)
            left_out = self._leave_out_svm(fitted_on)
            if self.folds:
                best, grid, module, scaler = self._choose_by_folds(*pooled(self._training, val), scorer_for, names)
            else:
                best, grid, module, scaler = self._choose_on_validation(*val[:3], scorer_for(val[1], val[2]), names)
            self._hold(best.layer, best.kind, best.setting, module, scaler)
        on = (f"{self.folds}-fold cross-validation over the training and validation chunks, each group of tracks "
              "held out whole, the choice then refitted on all of them (so the val/ metrics are in-sample)"
              if self.folds else "the validation chunks")
        measure = ("highest track macro PR-AUC (average precision over the tags with a positive and a negative "
                   f"track: the run's val/track_ap) on {on}, then track macro ROC-AUC" if is_multilabel(y) else
                   f"highest track accuracy on {on}, then chunk accuracy")
        self.report = {
            "rule": f"{measure}; ties: logistic, rbf_svm, mlp, then the smaller setting (C, gamma; learning rate), "
                    "then the lower layer",
            "standardisation": "each layer by the mean and scale of the chunks it is fitted on",
            **({"multilabel": MULTILABEL_FIT} if is_multilabel(y) else {}),
            "train_chunks": len(self._training[1]), "val_chunks": len(val[1]), "folds": self.folds,
            **({"left_out": left_out} if left_out else {}),
            "grid": [record for _, record in sorted(grid, key=lambda entry: entry[0])],
            "chosen": best.record(self.layer_names)}
        self._training = None
        log.info("Probe chosen on %s among %d candidates: %s on layer %s, %s (%s %.3f).", on, len(grid),
                 best.kind, layer_label(self.layer_names, best.layer), best.setting, names[0], best.scores[0])
        return best.scores[0]

    def _progress(self, inputs: list) -> tqdm:
        # A minute or more on a large folder, where nothing else reports: a bar over the candidate inputs.
        return tqdm(inputs, desc="Fitting the probe's candidates", unit="input", leave=False)

    def _leave_out_svm(self, chunks: int) -> str:
        """Whether the RBF SVM candidates are fitted on `chunks` training chunks: why not, or ""."""
        self._svm_fits = chunks <= self.svm_max_chunks
        if self._svm_fits or not (self.svm_C and self.svm_gamma):
            return ""
        why = (f"rbf_svm: {chunks} training chunks are more than model.head.svm_max_chunks={self.svm_max_chunks} (an "
               "SVC's fit grows with the square of its chunks); raise it to include the RBF SVM")
        log.warning("The probe's grid leaves out %s.", why)
        return why

    def _choose_on_validation(self, x_val, y_val, _groups, score: Scorer, names: tuple[str, str]):
        """Every candidate fitted on the training chunks, scored on the validation chunks."""
        x, y = self._training[:2]
        grid, best, best_scaler = [], None, None
        for layer in self._progress(self.candidate_layers):
            z, scaler = self._standardised(x, layer)
            z_val, _ = self._standardised(x_val, layer, scaler)
            fitted = [Candidate(layer, fit.kind, fit.setting, score(fit.logits), fit.build, fit.details, names)
                      for fit in self._fits(layer, z, y, z_val, y_val)]
            grid += [(c.order(), c.record(self.layer_names)) for c in fitted]
            # Only the best so far is kept: the other fits (an SVM's support vectors and training
            # chunks) go layer by layer.
            chosen = choose(fitted + ([best] if best else []))
            if chosen is not best:
                best, best_scaler = chosen, scaler
        return best, grid, best.build(), best_scaler

    def _choose_by_folds(self, x, y, tracks, groups, scorer_for: ScorerFor, names: tuple[str, str]):
        """Every candidate scored on its out-of-fold logits over the pooled chunks (k folds of whole
        groups, stratified by class, a multi-label chunk by its rarest label: scikit-learn's
        StratifiedGroupKFold), the best refitted on all."""
        folds = grouped_folds(y, groups, self.folds)
        score = scorer_for(y, tracks)
        grid, best = [], None
        for layer in self._progress(self.candidate_layers):
            held_out: dict[tuple, OutOfFold] = {}
            for train, test in folds:
                z, scaler = self._standardised(x[train], layer)
                z_test, _ = self._standardised(x[test], layer, scaler)
                for fit in self._fits(layer, z, y[train], z_test, y[test]):
                    entry = held_out.setdefault((fit.kind, *fit.setting.values()), OutOfFold(fit, len(y)))
                    entry.add(test, fit)
            scored = [Candidate(layer, e.kind, e.setting, score(e.logits), None, e.summary(), names)
                      for e in held_out.values()]
            grid += [(c.order(), c.record(self.layer_names)) for c in scored]
            best = choose(scored + ([best] if best else []))
        z, scaler = self._standardised(x, best.layer)
        return best, grid, self._refit(best, z, y), scaler

    def _fits(self, layer, z, y, z_val, y_val) -> list[Fit]:
        """Every candidate of one layer, fitted on its standardised training embeddings `z`, with its
        logits on `z_val` (an MLP stops early on `z_val`'s loss)."""
        out, width, n = [], z.shape[1], self.out_features
        with torch.no_grad():
            for c, linear in zip(self.C, logistic_regressions(z, y, self.C, n)):
                out.append(Fit("logistic", {"C": c}, linear(z_val), build=lambda m=linear: m))
            if self.svm_C and self.svm_gamma and self._svm_fits:
                svm = RBFSVMHead(width, n, C=self.svm_C, gamma=[g / width for g in self.svm_gamma], precompute=True,
                                 verbose=False)
                svm = svm.to(z.device)
                svm.fit(z, y)
                for setting in svm.candidates():
                    out.append(Fit("rbf_svm", setting, svm(z_val), build=partial(svm.keep, setting)))
        for lr in self.mlp_lr:
            mlp, epochs = train_mlp(partial(MLPHead, width, n, **self.mlp), z, y, z_val, y_val, lr, self.mlp_epochs,
                                    self.mlp_patience, seed=torch.initial_seed())
            with torch.no_grad():
                out.append(Fit("mlp", {"lr": lr}, mlp(z_val), build=lambda m=mlp: m, details={"epochs": epochs}))
        return out

    def _refit(self, chosen: Candidate, z: torch.Tensor, y: torch.Tensor) -> nn.Module:
        """`chosen`'s kind and setting fitted on standardised embeddings `z` (of its layer): an MLP for
        the mean of its best epochs over the folds, as there is no held-out data left to stop it."""
        n = self.out_features
        if chosen.kind == "logistic":
            return logistic_regressions(z, y, [chosen.setting["C"]], n)[0]
        if chosen.kind == "rbf_svm":
            svm = RBFSVMHead(z.shape[1], n, C=[chosen.setting["C"]], gamma=[chosen.setting["gamma"]], precompute=True)
            svm.to(z.device).fit(z, y)
            return svm.keep(chosen.setting)
        epochs = max(1, round(chosen.details["epochs"]))
        mlp, _ = train_mlp(partial(MLPHead, z.shape[1], n, **self.mlp), z, y, None, None, chosen.setting["lr"],
                           epochs, self.mlp_patience, seed=torch.initial_seed())
        return mlp

    def get_extra_state(self) -> dict:
        return {"layer": list(self.layer), "kind": self.kind, "setting": self.setting, "report": self.report}

    def set_extra_state(self, state: dict) -> None:
        self.report = state["report"]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state = state_dict.get(prefix + "_extra_state")
        if isinstance(state, dict):  # the checkpoint's choice: a module of its kind and shape, filled by the load
            self._hold(state["layer"], state["kind"], state["setting"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# What metrics.json's "head" says of a multi-label probe (task=multilabel).
MULTILABEL_FIT = ("one binary problem per tag (one vs rest): a binary logistic regression per tag, one binary RBF "
                  "SVC per tag, the MLP trained on the binary cross-entropy of each tag's sigmoid (stopped on the "
                  "validation one); a tag without a positive or without a negative training chunk gets the constant "
                  "logit of its training prevalence, smoothed by half a chunk each way")


HEADS = {"linear": LinearHead, "mlp": MLPHead, "linear_svm": LinearSVMHead, "rbf_svm": RBFSVMHead,
         "select": ProbeSelectionHead}


def head_settings(settings: dict | str | None) -> dict:
    """A head's settings as a dict with its name: None is a trained linear layer, a string a head by
    name with its default settings (conf/model/probe.yaml's `head: select`, which a `model.head={...}`
    override replaces where a dict would be merged into)."""
    if isinstance(settings, str):
        return {"name": settings}
    return {"name": "linear", **(settings or {})}


def fuses_descriptors(settings: dict | str | None) -> bool:
    """Whether the head `settings` name joins the classic descriptor statistics to the encoder's layers
    (the `select` head, unless its `fuse` leaves them out), so that the encoder computes them."""
    try:
        settings = head_settings(settings)
    except TypeError:  # not settings at all: build_head says so
        return False
    fuse = settings.get("fuse")
    return settings["name"] == "select" and (fuse is None or DESCRIPTORS in list(fuse))


def is_fitted(settings: dict | str | None) -> bool:
    """Whether the head `settings` name is fitted in closed form (False for a name mgr does not know:
    build_head refuses it)."""
    try:
        name = head_settings(settings)["name"]
    except TypeError:  # not settings at all: build_head says so
        return False
    return bool(getattr(HEADS.get(name) if isinstance(name, str) else None, "fitted", False))


def build_head(settings: dict | str | None, embedding_dim: int, num_classes: int,
               embedding_layers: list[tuple] | None = None) -> nn.Module:
    """The head `settings` name, on embeddings of `embedding_dim`; a head that works per layer
    (`per_layer`) also gets `embedding_layers`: (name, width) of each part of the embedding, in order."""
    settings = head_settings(settings)
    name = settings.pop("name")
    if name not in HEADS:
        raise MGRError(f"Unknown model.head.name={name!r}; choose one of {', '.join(HEADS)}.")
    if getattr(HEADS[name], "per_layer", False):
        settings["embedding_layers"] = embedding_layers
    return HEADS[name](embedding_dim, num_classes, **settings)

"""Output layers: embeddings [B, D] -> logits [B, n_classes].

`linear` is trained with the net by gradient descent. `linear_svm` is fitted in
closed form (`fitted = True`): the task collects the training embeddings for
`passes` epochs, each with new random chunks, and fits after each epoch on all
collected so far, so every validation sees the SVM as it stands. It is seed
report 004's classic baseline with `model=stats_linear_svm feature=mfcc`
(MFCC statistics, as Mandel & Ellis 2005 for artist20): the embeddings are
standardised and a linear SVM (scikit-learn's LinearSVC, one vs rest) is
fitted; its weights, with the standardisation folded in, become this Linear
layer, so its checkpoint is plain tensors. The logits are the SVM's decision
values, so the logged loss is no probability loss.
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
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
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


HEADS = {"linear": LinearHead, "linear_svm": LinearSVMHead}


def build_head(settings: dict | None, embedding_dim: int, num_classes: int) -> nn.Linear:
    settings = dict(settings or {"name": "linear"})
    name = settings.pop("name", "linear")
    if name not in HEADS:
        raise MGRError(f"Unknown model.head.name={name!r}; choose one of {', '.join(HEADS)}.")
    return HEADS[name](embedding_dim, num_classes, **settings)

"""A linear SVM on a feature's per-bin statistics: with `feature=mfcc`, the
classic baseline seed 004 (004_00d45737b26eb553.txt) compares its CRNN with,
summary statistics of frame-level MFCCs classified by a support vector machine
(as in Mandel & Ellis 2005, the artist20 baseline). Named for what it is, not
for MFCCs: it takes any feature (checkpoints of its old name, MFCCSVM, load).

Every chunk becomes the mean and standard deviation over time of each bin of
the frontend's output (MFCCs with `feature=mfcc`, band energies with mel or
STFT), standardised, then a linear SVM (scikit-learn's LinearSVC, one vs rest)
is fitted on the training chunks. Its weights, with the standardisation folded
in, become the `head` Linear layer, so the model is a GenreClassifier like the
others: the same chunk and track metrics, a checkpoint of plain tensors,
`load_from_checkpoint(path)` and `mgr.eval` unchanged. The logits are the
SVM's decision values, so the logged loss is not a probability loss.
`mgr.train` calls `fit_svm` instead of a Lightning training loop.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from mgr.models.base import GenreClassifier

log = logging.getLogger(__name__)


class StatsLinearSVM(GenreClassifier):
    def __init__(
        self,
        class_names: list[str],
        feature: dict,
        sample_rate: int,
        chunk_seconds: float,
        C: float = 1.0,
        fit_passes: int = 4,
        max_iter: int = 10000,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
    ):
        super().__init__(class_names, feature, sample_rate, chunk_seconds, optimizer, scheduler)
        self.check_min_frames(2, "a standard deviation over time")
        self.head = nn.Linear(2 * self.n_bins, self.num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def features(self, wave):
        return self.frontend(wave)  # raw dB values: the SVM pipeline standardises its statistics itself

    def embed(self, spec):
        x = spec.squeeze(1)
        return torch.cat([x.mean(dim=2), x.std(dim=2)], dim=1)

    @torch.no_grad()
    def statistics(self, loader, passes: int = 1) -> tuple[np.ndarray, np.ndarray]:
        self.eval()
        xs, ys = [], []
        for _ in range(passes):  # the training loader draws new random chunks on every pass
            for wave, target, _ in loader:
                xs.append(self.embed(self.features(wave.to(self.device))).cpu())
                ys.append(target)
        return torch.cat(xs).double().numpy(), torch.cat(ys).numpy()

    def fit_svm(self, loader, passes: int | None = None) -> float:
        """Fit on `passes` (default `fit_passes`) passes of the training loader; returns the training accuracy."""
        x, y = self.statistics(loader, passes or self.hparams.fit_passes)
        return self.fit_arrays(x, y)

    @torch.no_grad()
    def fit_arrays(self, x: np.ndarray, y: np.ndarray) -> float:
        from sklearn.svm import LinearSVC

        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
        svm = LinearSVC(C=self.hparams.C, max_iter=self.hparams.max_iter).fit((x - mean) / scale, y)
        coef, intercept = np.zeros((self.num_classes, x.shape[1])), np.zeros(self.num_classes)
        if len(svm.classes_) == 2:  # one decision value: class b when positive
            coef[svm.classes_[1]], intercept[svm.classes_[1]] = svm.coef_[0], svm.intercept_[0]
            coef[svm.classes_[0]], intercept[svm.classes_[0]] = -svm.coef_[0], -svm.intercept_[0]
        else:  # classes missing from the training data keep zero weights
            coef[svm.classes_], intercept[svm.classes_] = svm.coef_, svm.intercept_
        # w . (x - mean) / scale + b  ==  (w / scale) . x + (b - w . mean / scale)
        self.head.weight.copy_(torch.as_tensor(coef / scale, dtype=torch.float32))
        self.head.bias.copy_(torch.as_tensor(intercept - (coef / scale) @ mean, dtype=torch.float32))
        accuracy = float(svm.score((x - mean) / scale, y))
        log.info("Linear SVM fitted on %d training chunks: training accuracy %.3f.", len(y), accuracy)
        return accuracy

"""Several trained models as one: the folds' models of a cross-validated run, or the seeds' of one
configuration, averaged at prediction time (mgr.predict and mgr.eval with ckpt_path=[a.ckpt,b.ckpt]).

The rule: every member scores a chunk, and the ensemble's chunk output is the mean of the members'
softmax probabilities. Probabilities, not logits, because the members need not share a logit scale:
nets trained with other seeds, schedules or label smoothing give logits of other spreads, and a
closed-form head's outputs are no logits at all (the SVMs' decision values), so the mean of their
logits would let the widest-spread member decide alone. The probabilities are carried as their
logarithm wherever mgr expects logits, so the track aggregation (mean_logits, mean_probs,
majority_vote), the loss and the metrics of a GenreClassifier work on them unchanged: softmax gives
the mean probabilities back, and the cross-entropy is the ensemble's negative log-likelihood. An
ensemble of one model scores as the model does (a log-softmax shifts each chunk's logits by one
constant, which neither softmax nor the mean_logits rule sees).

Multi-label members (task=multilabel) are averaged the same way per tag: the mean of their sigmoid
probabilities, carried as its logit, so the sigmoid gives the mean back. A tag is answered at the mean
of the members' thresholds (each chosen on its own validation tracks: the ensemble has none of its
own). Members must all be multi-class or all multi-label.

Limitation: an SVM head's "probabilities" are the softmax of its decision values (as its own track
aggregation uses them), a monotone score with no calibration: decision values of a unit or two give
a nearly flat softmax, so beside a confident net an SVM member weighs little, whatever its accuracy.
Average SVMs with SVMs and nets with nets, or read a mix as a weighting of scores, not of probabilities.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mgr import MGRError
from mgr.models.task import DEFAULT_THRESHOLD, GenreClassifier


def mean_probability_logits(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """log(mean over models of softmax(logits)): [models x (N, C)] -> (N, C), computed stably."""
    log_probabilities = torch.stack([F.log_softmax(x.float(), dim=-1) for x in logits])
    return torch.logsumexp(log_probabilities, dim=0) - math.log(len(logits))


def mean_sigmoid_logits(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """logit(mean over models of sigmoid(logits)), tag by tag: log of the mean probability of each tag
    minus log of the mean probability of its absence, computed stably."""
    stacked = torch.stack([x.float() for x in logits])
    return torch.logsumexp(F.logsigmoid(stacked), dim=0) - torch.logsumexp(F.logsigmoid(-stacked), dim=0)


def check_members_agree(members: Sequence[GenreClassifier], names: Sequence[str]) -> None:
    """Every member hears chunks of the first's sample rate and length and names the first's classes
    in its order; else one sentence names the first member that differs and how."""
    first = members[0]
    for model, name in zip(members[1:], names[1:]):
        differences = []
        if model.class_names != first.class_names:
            differences.append(f"classes {model.class_names}, not {first.class_names}")
        if model.hparams.sample_rate != first.hparams.sample_rate:
            differences.append(f"sample rate {model.hparams.sample_rate} Hz, not {first.hparams.sample_rate} Hz")
        elif model.chunk_samples != first.chunk_samples:  # at one rate: only the length counts
            differences.append(f"chunk length {model.hparams.chunk_seconds:g} s, not {first.hparams.chunk_seconds:g} s")
        if differences:
            raise MGRError(f"Cannot average {name} with {names[0]}: it has {'; '.join(differences)}; average only "
                           "models trained on the same classes (in the same order), sample rate and chunk length.")


class Ensemble(GenreClassifier):
    """A GenreClassifier whose forward is its members' mean probabilities, as log-probabilities (see
    the module docstring). Everything else, the metrics, track aggregation, class names, sample rate
    and chunk length, is the first member's task; build it with `Ensemble.of`."""

    members: nn.ModuleList

    @classmethod
    def of(cls, members: Sequence[GenreClassifier], names: Sequence[str]) -> "Ensemble":
        """The ensemble of trained `members` (`names`: their checkpoints, for errors), checked to agree."""
        if len({m.multilabel for m in members}) > 1:
            raise MGRError(f"ckpt_path mixes multi-class and multi-label checkpoints ({', '.join(names)}), whose "
                           "probabilities mean different things; average checkpoints of one task.")
        check_members_agree(members, names)
        ensemble = cls(**members[0].hparams)  # the first's task: its metrics and track aggregation
        # The first member's modules, not the copy just built: chunk_samples and the like read them.
        ensemble.encoder, ensemble.head = members[0].encoder, members[0].head
        ensemble.members = nn.ModuleList(members)
        ensemble.set_temperature(1.0)  # each member's softmax is calibrated by its own temperature (forward)
        if ensemble.multilabel:  # the mean of the members' thresholds, tag by tag
            thresholds = [m.thresholds or [DEFAULT_THRESHOLD] * m.num_classes for m in members]
            ensemble.set_thresholds([sum(ts) / len(ts) for ts in zip(*thresholds)])
        return ensemble

    @property
    def architecture(self) -> str:
        return f"ensemble of {len(self.members)} ({', '.join(m.architecture for m in self.members)})"

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # Each member's forward divides its logits by its own temperature: the mean of calibrated probabilities.
        mean = mean_sigmoid_logits if self.multilabel else mean_probability_logits
        return mean([member(wave) for member in self.members])

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        raise MGRError("An ensemble has no one embedding; give mgr.embed one checkpoint.")

"""How the chunk logits of a track (cut by mgr.data.chunking) are combined into its scores: the
model's `TrackAggregation` (the run's `track_aggregation`, kept in the checkpoint), the one rule
behind training's and mgr.eval's track metrics, mgr.predict's file probabilities and mgr.embed's
track predictions (track embeddings are always the mean of the chunks'):

- `mean_logits` (default): the mean of the chunk logits; probabilities are its softmax.
- `mean_probs`: the mean of the chunk softmax probabilities (Won et al. 2020's test, who
  average the sigmoid outputs of their tagging models).
- `majority_vote`: each chunk whose top softmax probability is above `vote_threshold` votes for
  that class; the track's scores are the shares of the votes, the most votes win, a tie goes
  to the class listed first (seed report 004's code: scipy's mode over the confident slices). When no
  chunk of a track passes the threshold, every chunk of it votes (that code's fallback too).
  `vote_threshold=0` lets every chunk vote.

For a multi-label model (`multilabel`: one sigmoid per class) the same names hold with sigmoids for
softmaxes: `mean_probs`, the mean of the chunks' sigmoid probabilities, is the tagging literature's
rule (Won et al. 2020) and task=multilabel's default; `mean_logits`'s probabilities are the sigmoid of
the mean logits. `majority_vote`, a vote for one class per chunk, is for one label per track only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mgr import MGRError

TRACK_AGGREGATIONS = {"mean_logits": "mean of chunk logits", "mean_probs": "mean of chunk probabilities",
                      "majority_vote": "majority vote of chunks"}


@dataclass(frozen=True)
class TrackAggregation:
    """How the chunks of a track are combined into its scores (see the module docstring)."""

    name: str = "mean_logits"
    vote_threshold: float = 0.5
    multilabel: bool = False  # the model's task's, not a setting of its own: not in as_dict

    def __post_init__(self):
        if self.name not in TRACK_AGGREGATIONS:
            raise MGRError(f"track_aggregation={self.name!r} is not one of {', '.join(TRACK_AGGREGATIONS)}.")
        if self.multilabel and self.name == "majority_vote":
            raise MGRError("track_aggregation=majority_vote gives each chunk one vote, for one label per track; a "
                           "multi-label model combines chunks by mean_probs (the default) or mean_logits.")
        if isinstance(self.vote_threshold, bool) or not isinstance(self.vote_threshold, (int, float)) \
                or not 0 <= self.vote_threshold < 1:
            raise MGRError(f"vote_threshold={self.vote_threshold!r} must be a number from 0 to below 1 "
                           "(a chunk votes when its top probability is above it).")

    def __str__(self) -> str:
        above = f" (top probability above {self.vote_threshold:g})" if self.name == "majority_vote" else ""
        return TRACK_AGGREGATIONS[self.name] + above

    def as_dict(self) -> dict:
        return {"track_aggregation": self.name, "vote_threshold": float(self.vote_threshold)}

    def scores(self, logits: torch.Tensor, tracks: torch.Tensor, n_tracks: int) -> torch.Tensor:
        """[n_tracks, C] scores of tracks 0..n_tracks-1 from chunk `logits` [N, C] and each chunk's
        track `tracks` [N]; the argmax (first on ties) is the track's prediction."""
        logits = logits.float()
        if self.name == "mean_logits":
            values = logits
        elif self.name == "mean_probs":
            values = self._probabilities(logits)
        else:
            top, choice = torch.softmax(logits, dim=1).max(dim=1)
            confident = top > self.vote_threshold
            has_confident = torch.bincount(tracks[confident], minlength=n_tracks) > 0
            voting = confident | ~has_confident[tracks]  # a track with no confident chunk: all vote
            tracks, values = tracks[voting], F.one_hot(choice[voting], logits.shape[1]).float()
        sums = torch.zeros(n_tracks, logits.shape[1], device=logits.device).index_add_(0, tracks, values)
        return sums / torch.bincount(tracks, minlength=n_tracks).clamp(min=1).unsqueeze(1)

    def probabilities(self, logits: torch.Tensor, tracks: torch.Tensor, n_tracks: int) -> torch.Tensor:
        """The scores as probabilities: the softmax of the mean logits, the mean probabilities, or
        the vote shares."""
        return self.probabilities_of(self.scores(logits, tracks, n_tracks))

    def probabilities_of(self, scores: torch.Tensor) -> torch.Tensor:
        """Tracks' scores (of `scores`) as probabilities: the softmax of mean logits; mean probabilities
        and vote shares as they are."""
        return self._probabilities(scores) if self.name == "mean_logits" else scores

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits as probabilities: a softmax over the classes, or one sigmoid per class (multilabel)."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)

"""mgr.models.ensemble: several trained models scored as one, by the mean of their probabilities."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from mgr import MGRError
from mgr.models.aggregation import TrackAggregation
from mgr.models import Ensemble, GenreClassifier
from mgr.restore import checkpoint_paths

SR = 8000
MEL = {"name": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 32}
CNN = {"name": "cnn", "channels": [4, 8, 8], "hidden": 8}
CRNN = {"name": "crnn", "channels": [4, 8, 8, 8], "rnn_hidden": 8}
RULES = ("mean_logits", "mean_probs", "majority_vote")


def model(net: dict = CNN, seed: int = 0, classes=("a", "b", "c"), rate: int = SR, seconds: float = 1.0,
          **kwargs) -> GenreClassifier:
    torch.manual_seed(seed)
    return GenreClassifier(list(classes), MEL, rate, seconds, net, **kwargs).eval()


@pytest.fixture(scope="module")
def chunks() -> tuple[torch.Tensor, torch.Tensor]:
    """Six one-second chunks of noise and each one's track (three tracks)."""
    torch.manual_seed(5)
    return torch.randn(6, SR), torch.tensor([0, 0, 1, 1, 1, 2])


def track_probabilities(m: GenreClassifier, wave: torch.Tensor, tracks: torch.Tensor, rule: str) -> torch.Tensor:
    with torch.no_grad():
        return TrackAggregation(rule, 0.4).probabilities(m(wave), tracks, int(tracks.max()) + 1)


@pytest.mark.parametrize("rule", RULES)
def test_an_ensemble_of_one_model_scores_as_the_model(chunks, rule):
    single = model()
    ensemble = Ensemble.of([single], ["a.ckpt"]).eval()
    wave, tracks = chunks
    assert torch.allclose(track_probabilities(ensemble, wave, tracks, rule),
                          track_probabilities(single, wave, tracks, rule), atol=1e-6)
    with torch.no_grad():
        assert torch.equal(ensemble(wave).argmax(1), single(wave).argmax(1))


def test_two_models_of_other_kinds_give_the_mean_of_their_probabilities(chunks):
    """A CNN and a CRNN whose logits have another scale (its head's weights times 50): the chunk
    probabilities are the mean of the two models' softmax, not the softmax of their mean logits."""
    cnn, crnn = model(CNN, seed=1), model(CRNN, seed=2)
    with torch.no_grad():
        crnn.head.weight *= 50
    ensemble = Ensemble.of([cnn, crnn], ["cnn.ckpt", "crnn.ckpt"]).eval()
    wave, tracks = chunks
    with torch.no_grad():
        expected = (torch.softmax(cnn(wave), 1) + torch.softmax(crnn(wave), 1)) / 2
        logits = ensemble(wave)
    assert torch.allclose(torch.softmax(logits, 1), expected, atol=1e-6)
    assert torch.allclose(logits.exp(), expected, atol=1e-6)  # log-probabilities: already normalised
    with torch.no_grad():
        assert not torch.allclose(expected, torch.softmax((cnn(wave) + crnn(wave)) / 2, 1), atol=1e-2)
    # Tracks combine the mean probabilities by the first member's rule, as one model's chunks.
    mean_probs = Ensemble.of([model(CNN, seed=1, track_aggregation="mean_probs"), crnn], ["cnn.ckpt", "crnn.ckpt"])
    assert mean_probs.track_aggregation.name == "mean_probs"
    assert torch.allclose(track_probabilities(mean_probs.eval(), wave, tracks, "mean_probs"),
                          torch.stack([expected[tracks == t].mean(0) for t in range(3)]), atol=1e-6)
    assert ensemble.architecture == "ensemble of 2 (cnn, crnn)" and ensemble.chunk_samples == cnn.chunk_samples


def test_each_member_softmax_is_calibrated_by_its_own_temperature(chunks):
    """Members of other temperatures (their checkpoints'): the mean of softmax(logits_i / T_i); the
    ensemble itself divides by nothing more."""
    cnn, crnn = model(CNN, seed=1, temperature=2.0), model(CRNN, seed=2, temperature=0.5)
    ensemble = Ensemble.of([cnn, crnn], ["cnn.ckpt", "crnn.ckpt"]).eval()
    wave, _ = chunks
    with torch.no_grad():
        raw = [m.head(m.embed(wave)) for m in (cnn, crnn)]
        expected = (torch.softmax(raw[0] / 2.0, 1) + torch.softmax(raw[1] / 0.5, 1)) / 2
        assert torch.allclose(ensemble(wave).exp(), expected, atol=1e-6)
    assert ensemble.temperature == 1.0 and [m.temperature for m in ensemble.members] == [2.0, 0.5]


@pytest.mark.parametrize("other,text", [
    (dict(classes=("c", "b", "a")), r"it has classes \['c', 'b', 'a'\], not \['a', 'b', 'c'\];"),
    (dict(rate=16000), "it has sample rate 16000 Hz, not 8000 Hz;"),
    (dict(seconds=1.5), "it has chunk length 1.5 s, not 1 s;"),
])
def test_members_that_differ_are_one_sentence_naming_the_checkpoint(other, text):
    members = [model(), model(seed=1), model(**other)]
    with pytest.raises(MGRError, match=rf"^Cannot average odd\.ckpt with a\.ckpt: {text} average only models "
                                       r"trained on the same classes \(in the same order\), sample rate and chunk "
                                       r"length\.$"):
        Ensemble.of(members, ["a.ckpt", "b.ckpt", "odd.ckpt"])


def test_several_checkpoints_only_where_the_entry_point_averages_them():
    several = OmegaConf.create({"ckpt_path": ["a.ckpt", "b.ckpt"]})
    assert checkpoint_paths(several, ensemble=True) == ["a.ckpt", "b.ckpt"]
    assert checkpoint_paths(OmegaConf.create({"ckpt_path": "a.ckpt"})) == ["a.ckpt"]
    with pytest.raises(MGRError, match="^ckpt_path names 2 checkpoints; only mgr.predict and mgr.eval average"):
        checkpoint_paths(several)  # mgr.embed: an ensemble has no one embedding
    with pytest.raises(MGRError, match=r"^ckpt_path=\[\] names no checkpoint"):
        checkpoint_paths(OmegaConf.create({"ckpt_path": []}), ensemble=True)
    with pytest.raises(MGRError, match="no one embedding"):
        Ensemble.of([model(), model(seed=1)], ["a.ckpt", "b.ckpt"]).embed(torch.zeros(1, SR))


def test_multilabel_models_average_their_sigmoid_probabilities_and_thresholds(chunks):
    """Multi-label members: per tag, the mean of their (calibrated) sigmoid probabilities, answered at the
    mean of their thresholds; a mix of multi-class and multi-label members is one sentence."""
    wave, _ = chunks
    members = [model(seed=1, task="multilabel", thresholds=[0.2, 0.5, 0.8]),
               model(seed=2, task="multilabel", thresholds=[0.4, 0.5, 0.6])]
    members[1].set_temperature([2.0, 1.0, 0.5])
    ensemble = Ensemble.of(members, ["a.ckpt", "b.ckpt"]).eval()
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(m(wave)) for m in members]).mean(0)
        torch.testing.assert_close(torch.sigmoid(ensemble(wave)), expected)
    assert ensemble.thresholds == pytest.approx([0.3, 0.5, 0.7])
    assert ensemble.answered(expected).tolist() == (expected >= torch.tensor([0.3, 0.5, 0.7])).tolist()
    with pytest.raises(MGRError, match="mixes multi-class and multi-label checkpoints"):
        Ensemble.of([model(seed=1), members[0]], ["a.ckpt", "b.ckpt"])

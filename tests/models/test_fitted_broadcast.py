"""Under DDP every rank holds rank 0's fitted head, bit for bit (FittedClassifier._take_rank_zero_head).

The ranks fit and choose the head on the same gathered chunks, but a GPU's kernels that are not
deterministic (or BLAS on another thread count) can round one rank's fit otherwise, and a tie of the
choice then break another way. Here rank 1 fits on embeddings one float step off (`nextafter`) and, where
the head chooses, chooses the worst candidate: after each fit and choice both ranks still hold rank 0's
head, the one rank 0 saves."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from mgr.models import GenreClassifier
from test_fitted_ddp import SaveHeads, saved

SR = 8000
MFCC = {"name": "mfcc", "n_fft": 256, "hop_length": 128, "n_mels": 32, "n_mfcc": 13}
HEADS = {"linear_svm": {"name": "linear_svm", "passes": 1},
         "rbf_svm": {"name": "rbf_svm", "C": [0.1, 1.0, 10.0], "gamma": [0.01, 0.1]},
         "select": {"name": "select", "C": [0.001], "svm_C": [1.0], "mlp_lr": []}}
# Where rank 1's own head differs from rank 0's: the linear SVM's weights, the RBF SVM's C and gamma, the
# probe's choice (rank 0 chooses an RBF SVM, rank 1 a logistic regression: it rebuilds the other kind).
DIFFERS = {"linear_svm": ["weight"], "rbf_svm": ["chosen_C", "gamma"], "select": ["_extra_state"]}


def noise_chunks(n: int, seed: int) -> TensorDataset:
    """`n` one-second chunks of three classes of noise (loud, quiet, brown), each chunk its own track."""
    generator = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % 3
    wave = torch.randn(n, SR, generator=generator) * torch.tensor([1.0, 0.05, 0.3])[label, None]
    wave[label == 2] = torch.cumsum(wave[label == 2], dim=1) * 0.05
    return TensorDataset(wave, label, torch.arange(n))


def inverted(scorer):
    """A Scorer (of logits) that ranks candidates the other way round: the worst is chosen."""
    return lambda logits: tuple(-s for s in scorer(logits))


class RankOneDiffers(pl.Callback):
    """Rank 1 fits its head on embeddings one float step off and chooses the worst candidate; its head
    right after its own fit and choice (before anything else the task does) goes to <out>/rank1_own.pt."""

    def __init__(self, out: str):
        self.out = out

    def on_fit_start(self, trainer, pl_module):
        if trainer.global_rank != 1:
            return
        head = pl_module.head
        fit, select = head.fit, getattr(head, "select", None)

        def save_own():
            torch.save({k: v.detach().clone() if torch.is_tensor(v) else v for k, v in head.state_dict().items()},
                       f"{self.out}/rank1_own.pt")

        def fit_off(x, *args):
            result = fit(torch.nextafter(x, torch.full_like(x, torch.inf)), *args)
            save_own()
            return result

        def select_worst(x, y, *args):
            if getattr(head, "selects_by_track", False):  # the probe: select(x, y, tracks, scorer_for, groups)
                tracks, scorer_for, *groups = args
                result = select(x, y, tracks, lambda *a: inverted(scorer_for(*a)), *groups)
            else:  # the RBF SVM chooses by the chunk accuracy
                result = select(x, y, inverted(lambda logits: ((logits.argmax(1) == y).float().mean().item(),)))
            save_own()
            return result

        head.fit = fit_off
        if select is not None:
            head.select = select_worst


@pytest.mark.slow
@pytest.mark.parametrize("head", list(HEADS))
def test_every_rank_holds_rank_zeros_head_bit_for_bit(head, tmp_path):
    torch.manual_seed(0)
    model = GenreClassifier(["a", "b", "c"], MFCC, SR, 1.0, {"name": "stats"}, head=HEADS[head])
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[SaveHeads(str(tmp_path)), RankOneDiffers(str(tmp_path))])
    trainer.fit(model, DataLoader(noise_chunks(24, 0), batch_size=6), DataLoader(noise_chunks(12, 1), batch_size=6))

    rank0, rank1 = saved(tmp_path, 0, 0)["head"], saved(tmp_path, 1, 0)["head"]
    own = torch.load(tmp_path / "rank1_own.pt", weights_only=False)
    assert not all(same(own, rank0, key) for key in DIFFERS[head]), "rank 1's own fit or choice is rank 0's"
    assert rank1.keys() == rank0.keys()
    for key in rank0:  # bit for bit: the choice (the probe's extra state) and every tensor
        assert same(rank1, rank0, key), key


def same(state: dict, other: dict, key: str) -> bool:
    value = other[key]
    return torch.equal(state[key], value) if torch.is_tensor(value) else state[key] == value

"""The probe (`model=probe encoder=<name>`): a head on a pretrained encoder of mgr.encoders, frozen
or fine-tuned, one layer, the mean or a learned weighting of all; its checkpoint holds the
head and either the fine-tuned weights or the frozen weights' hash, verified on loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from conftest import TINY_DATA, run_dir_of, save_checkpoint
from hf_models import save_tiny
from mgr import MGRError
from mgr.models import GenreClassifier, load_model
from mgr.models.heads import MLPHead

pytest.importorskip("transformers")

SR = 8000  # the data's rate; the tiny HuBERT runs at 16 kHz


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory):
    return save_tiny("hubert", tmp_path_factory.mktemp("hubert"))


def probe(weights, layer="mean", finetune=False, head=None, encoder_descriptors=False, **kwargs) -> GenreClassifier:
    encoder = {"name": "hubert", "weights": str(weights), "layer": layer, "finetune": finetune, "lr_scale": 0.1,
               "descriptors": encoder_descriptors}
    return GenreClassifier(["a", "b", "c"], {"name": "mel"}, SR, 0.5, {"name": "probe"}, head,
                           encoder=encoder, **kwargs)


@pytest.mark.parametrize("layer", [0, -1, "mean", "weighted"])
def test_each_layer_choice_embeds_the_resampled_wave(hubert_dir, layer):
    model = probe(hubert_dir, layer).eval()
    wave = torch.randn(2, SR // 2)
    assert model.embed(wave).shape == (2, 16) and model(wave).shape == (2, 3)
    with torch.no_grad():
        layers = model.encoder.backbone(model.encoder.resample(wave))
    assert model.encoder.resample(wave).shape == (2, 8000)  # 0.5 s at 16 kHz
    expected = torch.stack(layers).mean(0) if layer in ("mean", "weighted") else layers[layer]  # equal weights at first
    torch.testing.assert_close(model.embed(wave), expected)
    assert model.architecture == "hubert probe"
    # What mgr.train feeds it from the embedding cache: the chosen layers, stacked per chunk.
    cached = torch.stack([layers[i] for i in model.encoder.layer_indices], dim=1)
    assert cached.shape == (2, 1 if isinstance(layer, int) else 3, 16)
    torch.testing.assert_close(model.embed(cached), expected)


def test_the_embedding_cache_key_leaves_out_where_the_weights_lie_and_how_they_are_probed(hubert_dir, tmp_path):
    import shutil

    moved = shutil.copytree(hubert_dir, tmp_path / "elsewhere")
    identities = {json.dumps(probe(w, layer).encoder.identity, sort_keys=True)
                  for w, layer in [(hubert_dir, 0), (moved, "mean")]}
    assert len(identities) == 1 and "weights_sha256" in json.loads(identities.pop())


def test_a_layer_out_of_range_or_unequal_widths_are_one_clear_error(hubert_dir, tmp_path):
    with pytest.raises(MGRError, match=r"encoder.layer=3 is out of range: this encoder has 3 layers \(0 to 2"):
        probe(hubert_dir, 3)
    with pytest.raises(MGRError, match="encoder.layer='last'; give a layer number or one of mean, weighted"):
        probe(hubert_dir, "last")
    clap = {"name": "clap", "weights": str(save_tiny("clap", tmp_path / "clap")), "layer": "mean"}
    with pytest.raises(MGRError, match=r"combines layers of equal width only, and this encoder's differ \(\[16, 32, 32\]\)"):
        GenreClassifier(["a", "b"], {"name": "mel"}, SR, 0.5, {"name": "probe"}, encoder=clap)


def test_frozen_by_default_kept_out_of_the_optimizer_and_the_checkpoint(hubert_dir, tmp_path):
    model = probe(hubert_dir, "weighted", optimizer={"name": "adam", "lr": 0.01})
    backbone = list(model.encoder.backbone.parameters())
    assert not any(p.requires_grad for p in backbone)
    model.train()
    assert not model.encoder.backbone.training and model.head.training
    model.trainer = pl.Trainer(max_epochs=1, logger=False)
    (group,) = model.configure_optimizers().param_groups
    assert {id(p) for p in group["params"]} == {id(model.encoder.layer_weights), *map(id, model.head.parameters())}
    logits = model(torch.randn(2, SR // 2))
    logits.sum().backward()
    assert model.encoder.layer_weights.grad is not None and all(p.grad is None for p in backbone)
    save_checkpoint(model, tmp_path / "frozen.ckpt")
    stored = torch.load(tmp_path / "frozen.ckpt", weights_only=True)
    assert not [k for k in stored["state_dict"] if k.startswith("encoder.backbone.")]
    assert len(stored["hyper_parameters"]["encoder"]["weights_sha256"]) == 64


def test_finetune_trains_the_encoder_at_its_lr_scale_and_checkpoints_it(hubert_dir, tmp_path):
    model = probe(hubert_dir, -1, finetune=True, optimizer={"name": "adam", "lr": 0.01})
    model.trainer = pl.Trainer(max_epochs=1, logger=False)
    head, encoder = model.configure_optimizers().param_groups
    assert head["lr"] == 0.01 and encoder["lr"] == pytest.approx(0.001)
    assert {id(p) for p in encoder["params"]} == {id(p) for p in model.encoder.backbone.parameters()}
    model.train()
    assert model.encoder.backbone.training
    with torch.no_grad():  # a step away from the weights on disk
        next(model.encoder.backbone.parameters()).add_(1.0)
    save_checkpoint(model, tmp_path / "tuned.ckpt")
    restored = load_model(tmp_path / "tuned.ckpt").eval()
    wave = torch.randn(2, SR // 2)
    with torch.no_grad():
        torch.testing.assert_close(restored(wave), model.eval()(wave))


def test_a_frozen_probe_restores_from_its_checkpoint_and_the_weights_on_disk(hubert_dir, tmp_path):
    model = probe(hubert_dir, 1, head={"name": "mlp", "hidden": 8, "dropout": 0.1}).eval()
    assert isinstance(model.head, MLPHead) and model.architecture == "hubert probe + mlp"
    save_checkpoint(model, tmp_path / "probe.ckpt")
    wave = torch.randn(2, SR // 2)
    for restored in (load_model(tmp_path / "probe.ckpt"), GenreClassifier.load_from_checkpoint(tmp_path / "probe.ckpt")):
        with torch.no_grad():
            torch.testing.assert_close(restored.eval()(wave), model(wave))


def test_other_or_missing_weights_are_one_clear_error(tmp_path):
    weights = save_tiny("hubert", tmp_path / "hubert")
    save_checkpoint(probe(weights), tmp_path / "probe.ckpt")
    torch.manual_seed(1)  # other weights of the same architecture, in the same place
    import transformers

    transformers.HubertModel(transformers.HubertConfig.from_pretrained(weights)).save_pretrained(weights)
    with pytest.raises(MGRError, match=r"The weights of encoder hubert \(.*model.safetensors\) are not the ones this "
                                       r"model was trained on \(their sha256 differs\)"):
        load_model(tmp_path / "probe.ckpt")
    (weights / "model.safetensors").unlink()
    with pytest.raises(MGRError, match="holds no model weights"):
        load_model(tmp_path / "probe.ckpt")


def test_spectrogram_augmentation_is_refused_by_a_probe(hubert_dir, run_mgr, data_dir):
    from mgr.features import build_augment

    # By mgr.train before anything is extracted, and by the task itself.
    caches = set(data_dir.rglob("embeddings/*"))
    failed = run_mgr("train", "model=probe", "encoder=hubert_base", f"encoder.weights={hubert_dir}", *TINY_DATA,
                     "augment=specaugment", check=False)
    assert failed.returncode == 1 and set(data_dir.rglob("embeddings/*")) == caches
    assert "mgr: error: augment=specaugment masks a spectrogram, and a pretrained encoder takes the waveform; " \
           "use augment=none." in failed.stderr

    model = probe(hubert_dir).train()
    model.augment = build_augment({"name": "specaugment"}, 32, 16)
    with pytest.raises(MGRError, match="a pretrained encoder takes the waveform; use augment=none"):
        model.training_step((torch.randn(2, SR // 2), torch.tensor([0, 1]), torch.tensor([0, 1])), 0)


@pytest.mark.slow
def test_a_layer_sweep_trains_and_its_checkpoints_evaluate_and_predict(hubert_dir, run_mgr, tmp_path, data_dir):
    """`python -m mgr.train -m model=probe encoder=... encoder.layer=0,mean`, then mgr.eval,
    mgr.predict and mgr.embed from a job's checkpoint alone."""
    caches_before = set(data_dir.rglob("embeddings/*/meta.json"))
    run_mgr("train", "-m", "model=probe", "encoder=hubert_base", f"encoder.weights={hubert_dir}",
            "encoder.layer=0,mean", *TINY_DATA, "data.batch_size=8", "debug=limit", "trainer.max_epochs=1",
            "trainer.limit_train_batches=2", "trainer.enable_progress_bar=false",
            "recipe.mixup_alpha=0.2", "recipe.label_smoothing=0.1")  # as a real dataset's recipe: mixup of cached layers
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert len(jobs) == 2
    metrics = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    assert all(0.0 <= m["test/track_acc"] <= 1.0 for m in metrics)
    checkpoint = metrics[0]["best_checkpoint"]
    layers = {json.dumps(load_model(m["best_checkpoint"]).hparams.encoder["layer"]) for m in metrics}
    assert layers == {"0", '"mean"'}
    # Both jobs read one embedding cache, computed once; training tested on its cached test chunks,
    # and mgr.eval, from the waveforms, scores the same.
    (cache,) = [p.parent for p in set(data_dir.rglob("embeddings/*/meta.json")) - caches_before]
    assert json.loads((cache / "meta.json").read_text())["rows"] > 0
    evaluated = json.loads((run_dir_of(run_mgr("eval", f"ckpt_path={checkpoint}")) / "metrics.json").read_text())
    for key in ("test/track_acc", "test/acc", "test/loss"):
        assert evaluated[key] == pytest.approx(metrics[0][key], rel=1e-4, abs=1e-6)
    audio = sorted(data_dir.rglob("*.wav"))[0]
    predicted = run_mgr("predict", f"ckpt_path={checkpoint}", f"inputs=[{audio}]")
    assert "Labelled 1" in predicted.stdout
    embed_out = run_mgr("embed", f"ckpt_path={checkpoint}").stdout.splitlines()
    embedded = np.load(next(l for l in embed_out if l.strip().endswith("embeddings.npz")).strip())
    # The tiny HuBERT's width, and the descriptor statistics' that the select head fuses (80 at 8 kHz).
    assert embedded["chunk_embeddings"].shape[1] == 16 + 80


def test_layer_all_puts_every_layer_side_by_side_from_the_wave_and_from_the_cache(tmp_path):
    """encoder.layer=all on layers of unequal widths (the tiny CLAP's 16, 32, 32): the waveform path
    and the embedding cache's datasets (through cached_input's view) give the same concatenation."""
    clap = {"name": "clap", "weights": str(save_tiny("clap", tmp_path / "clap")), "layer": "all"}
    model = GenreClassifier(["a", "b"], {"name": "mel"}, SR, 0.5, {"name": "probe"}, encoder=clap).eval()
    assert model.encoder.embedding_layers == [(0, 16), (1, 32), (2, 32)] and model.encoder.embedding_dim == 80
    wave = torch.randn(3, SR // 2)
    with torch.no_grad():
        layers = model.encoder.layers(wave)
        expected = torch.cat(layers, dim=1)
        torch.testing.assert_close(model.embed(wave), expected)

    cached = fed_from_the_cache(model, layers)
    assert cached.shape == (3, 1, 80)
    torch.testing.assert_close(model.embed(cached), expected)


def test_descriptors_add_the_classic_baselines_statistics_as_one_more_layer(tmp_path):
    """encoder.descriptors=true: a layer `descriptors` after the encoder's, the very values the classic
    baseline (model=stats_rbf_svm feature=descriptors) classifies, computed at the data's rate, and a
    select head can fuse it with every other layer; beside one layer it follows that layer."""
    clap = {"name": "clap", "weights": str(save_tiny("clap", tmp_path / "clap")), "layer": "all", "descriptors": True}
    head = {"name": "select", "C": [1.0], "svm_C": [], "mlp_lr": [], "fuse": ["descriptors"]}
    model = GenreClassifier(["a", "b"], {"name": "mel"}, 22050, 1.0, {"name": "probe"}, head, encoder=clap).eval()
    assert model.encoder.embedding_layers == [(0, 16), (1, 32), (2, 32), ("descriptors", 82)]
    assert model.encoder.identity["descriptors"] is True  # an embedding cache of its own
    assert "descriptors" not in probe_without(clap).encoder.identity  # older caches keep their keys
    assert model.head.candidate_layers == [(0,), (0, 3), (1,), (1, 3), (2,), (2, 3), (3,)]
    classic = GenreClassifier(["a", "b"], {"name": "descriptors"}, 22050, 1.0, {"name": "stats"}, "rbf_svm").eval()
    wave = torch.randn(2, 22050) * 0.1
    with torch.no_grad():
        layers = model.encoder.layers(wave)
        torch.testing.assert_close(layers[-1], classic.embed(wave))
        assert model.embed(wave).shape == (2, 80 + 82)
        one = GenreClassifier(["a", "b"], {"name": "mel"}, 22050, 1.0, {"name": "probe"},
                              encoder={**clap, "layer": 1}).eval()
        assert one.encoder.embedding_layers == [(1, 32), ("descriptors", 82)]
        torch.testing.assert_close(one.embed(wave), torch.cat([layers[1], layers[-1]], dim=1))


def test_the_descriptors_follow_the_head_and_reach_it_from_the_cache(hubert_dir):
    """encoder.descriptors=auto (conf/encoder's): computed where the head fuses them, the select head
    by default, not with fuse: [] or a trained head; beside `mean` they follow the mean, from the
    waveform and from the embedding cache (the layers side by side) alike."""
    def layers_of(head, layer="all"):
        return probe(hubert_dir, layer, head=head, encoder_descriptors="auto").encoder.embedding_layers

    fused = probe(hubert_dir, "all", head="select", encoder_descriptors="auto")
    assert [name for name, _ in fused.encoder.embedding_layers] == [0, 1, 2, "descriptors"]
    assert (0, 3) in fused.head.candidate_layers and (3,) in fused.head.candidate_layers
    assert [name for name, _ in layers_of({"name": "select", "fuse": []})] == [0, 1, 2]
    assert [name for name, _ in layers_of({"name": "linear"}, "mean")] == ["mean"]
    with pytest.raises(MGRError, match="encoder.descriptors='yes'; give true, false or auto"):
        probe(hubert_dir, head="select", encoder_descriptors="yes")

    model = probe(hubert_dir, "mean", head={"name": "linear"}, encoder_descriptors=True).eval()
    assert [name for name, _ in model.encoder.embedding_layers] == ["mean", "descriptors"]
    wave = torch.randn(3, SR // 2) * 0.1
    with torch.no_grad():
        layers = model.encoder.layers(wave)
        expected = torch.cat([torch.stack(layers[:3]).mean(0), layers[3]], dim=1)
        torch.testing.assert_close(model.embed(wave), expected)

    cached = fed_from_the_cache(model, layers)
    torch.testing.assert_close(model.embed(cached), expected)


def fed_from_the_cache(model: GenreClassifier, layers: list[torch.Tensor]) -> torch.Tensor:
    """What the data module feeds `model` for three chunks whose layers are `layers` (rows 0-2), through
    its encoder's cached_input view of an embedding cache, as the cache's datasets stack them."""
    from mgr.data.embeddings import EmbeddedChunks

    class Store:  # what the embedding cache answers: rows of chunks, each layer's rows
        def rows(self, items):
            return np.array([start for _, start in items])

        def layer(self, i):
            return layers[i].numpy()

    store, fed = model.encoder.cached_input(Store())
    chunks = EmbeddedChunks(store, [0, 1, 2], [0, 1, 0], [(k, k) for k in range(3)], fed)
    return torch.stack([chunks[k][0] for k in range(3)])


def probe_without(encoder: dict) -> GenreClassifier:
    return GenreClassifier(["a", "b"], {"name": "mel"}, 22050, 1.0, {"name": "probe"},
                           encoder={**encoder, "descriptors": False})

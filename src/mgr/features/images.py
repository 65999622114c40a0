"""Feature images: a few validation chunks per class as the model sees them
(the frontend's output), drawn once at the start of training into
<run dir>/plots/feature_examples.png and sent to loggers that take images."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from mgr.plots import save_feature_examples


class FeatureImages(pl.Callback):
    def __init__(self, per_class: int = 3):
        self.per_class = per_class

    @torch.no_grad()
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not hasattr(trainer.datamodule, "eval_dataset"):
            return
        if not hasattr(pl_module.encoder, "frontend"):  # a pretrained encoder shows no feature map
            return
        trainer.datamodule.setup("fit")
        dataset = trainer.datamodule.eval_dataset("val")
        chosen: dict[int, list[torch.Tensor]] = {}
        seen_tracks = set()
        for i, (k, _) in enumerate(dataset.items):  # the first chunk of the first tracks of each class
            if k in seen_tracks:
                continue
            seen_tracks.add(k)
            wave, label, _ = dataset[i]
            label = first_class(label)
            if len(chosen.setdefault(label, [])) < self.per_class:
                chosen[label].append(wave)
        if not chosen:
            return
        waves = torch.stack([w for label in sorted(chosen) for w in chosen[label]]).to(pl_module.device)
        maps = pl_module.encoder.frontend(waves)[:, 0].float().cpu().numpy()
        path = Path(trainer.default_root_dir) / "plots" / "feature_examples.png"
        titles = [pl_module.class_names[label] for label in sorted(chosen) for _ in chosen[label]]
        feature = pl_module.hparams.feature.get("name", "feature")
        save_feature_examples(maps, titles, self.per_class, path,
                              f"{feature}: {maps.shape[1]} bins x {maps.shape[2]} frames per chunk")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image("features/examples", [str(path)])


def first_class(label) -> int:
    """The class a chunk is shown under: its label, or a multi-label row's first class."""
    label = torch.as_tensor(label)
    return int(label.argmax()) if label.dim() else int(label)

"""Feature images: a few validation chunks per class as the model sees them
(the frontend's output), drawn once at the start of training into
<run dir>/plots/feature_examples.png and sent to loggers that take images."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch


class FeatureImages(pl.Callback):
    def __init__(self, per_class: int = 3):
        self.per_class = per_class

    @torch.no_grad()
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not hasattr(trainer.datamodule, "eval_dataset"):
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
            if len(chosen.setdefault(label, [])) < self.per_class:
                chosen[label].append(wave)
        if not chosen:
            return
        waves = torch.stack([w for label in sorted(chosen) for w in chosen[label]]).to(pl_module.device)
        maps = pl_module.frontend(waves)[:, 0].float().cpu().numpy()
        path = Path(trainer.default_root_dir) / "plots" / "feature_examples.png"
        draw(maps, [pl_module.class_names[label] for label in sorted(chosen) for _ in chosen[label]],
             self.per_class, pl_module.hparams.feature.get("name", "feature"), path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image("features/examples", [str(path)])


def draw(maps, titles: list[str], per_row: int, feature: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(maps) // per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(3.2 * per_row, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, maps, titles):
        ax.imshow(image, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{feature}: {maps.shape[1]} bins x {maps.shape[2]} frames per chunk", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Re-run the test split from a checkpoint: python -m mgr.eval ckpt_path=/path/to/best.ckpt

Track metrics combine a track's chunks as the checkpoint's run did (its track_aggregation and
vote_threshold); `track_aggregation=...` / `vote_threshold=...` score them another way.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mgr import MGRError
from mgr.utils.tasks import instantiate_dict, task, test_and_report


@task
def evaluate(cfg: DictConfig) -> dict[str, float]:
    from hydra.utils import instantiate

    from mgr.data import GenreDataModule
    from mgr.models import load_model, read_checkpoint

    model = load_model(cfg.ckpt_path)
    model.set_track_aggregation(cfg.get("track_aggregation"), cfg.get("vote_threshold"))  # None: the checkpoint's
    if cfg.get("data"):
        datamodule = instantiate(cfg.data, _convert_="all")
    else:
        datamodule = GenreDataModule(**read_checkpoint(cfg.ckpt_path)["datamodule_hyper_parameters"])
    datamodule.prepare_data()
    if datamodule.class_names != model.class_names:
        raise MGRError(
            f"The dataset's classes {datamodule.class_names} differ from the checkpoint's {model.class_names}."
        )
    trainer = instantiate(cfg.trainer, logger=instantiate_dict(cfg.get("logger")) or False,
                          callbacks=instantiate_dict(cfg.get("callbacks")))
    return test_and_report(cfg, trainer, model, datamodule, f"Test results of {cfg.ckpt_path}",
                           {"checkpoint": str(cfg.ckpt_path)})


@hydra.main(version_base="1.3", config_path="pkg://mgr.conf", config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    return evaluate(cfg)


if __name__ == "__main__":
    main()

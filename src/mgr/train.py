"""Train a genre classifier: python -m mgr.train [group=option ...] [key=value ...]"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from mgr.test_report import test_and_report
from mgr.run_directory import prepare_run_directory
from mgr.entry import command, fresh_rendezvous_port, instantiate_dict, resolved_dict, task

log = logging.getLogger("mgr.train")


@task
def train(cfg: DictConfig) -> float | None:
    # Heavy imports here, so `--help` and `--cfg` answer at once.
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint

    from mgr.environment import environment
    from mgr.features import build_augment
    from mgr.models import CheckpointIO, GenreClassifier
    from mgr.models.finite import StopOnNonFinite
    from mgr.models.training_length import checked_min_steps, stretch_to_min_steps
    from mgr.tracking import choose_wandb_mode, continue_wandb_run, define_summaries
    from mgr.utils.progress import progress_for_logs

    prepare_run_directory(cfg)  # a used directory or a missing last checkpoint stops here
    ckpt_path = checked_checkpoint(cfg.get("ckpt_path"))
    min_steps = checked_min_steps(cfg.get("recipe"))
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()  # generates/decodes once; the class names come from the data
    model = GenreClassifier.from_config(cfg, datamodule.class_names)
    # Before a probe's embedding extraction: a pretrained encoder's n_bins is None, which build_augment refuses.
    model.augment = build_augment(resolved_dict(cfg.augment) if cfg.get("augment") else {}, model.encoder.n_bins,
                                  model.encoder.n_frames)
    # StopOnNonFinite is no option: a diverged run must never end as a success, whatever `callbacks=`.
    callbacks = (instantiate_dict(cfg.get("callbacks")) + progress_for_logs(cfg.trainer.get("enable_progress_bar", True))
                 + [StopOnNonFinite()])
    if cfg.get("logger") and "wandb" in cfg.logger:
        choose_wandb_mode()
        continue_wandb_run(cfg)
    loggers = instantiate_dict(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[CheckpointIO()])
    fresh_rendezvous_port(trainer)
    cache_embeddings(model, datamodule, trainer.strategy.root_device, cfg.data.get("eval_batch_size") or cfg.data.batch_size)
    # After the cache: a cached probe's epoch is every chunk of its training tracks.
    length = stretch_to_min_steps(trainer, datamodule, min_steps, fitted_head=model.head.fitted)
    training = {"training_length": length.as_dict()} if length else {}
    for logger in loggers:
        logger.log_hyperparams({**resolved_dict(cfg), "environment": environment(), **training})
    define_summaries(loggers)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)

    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    best_path = checkpoint.best_model_path if checkpoint else ""
    if cfg.get("test"):
        if not best_path:
            log.warning("No best checkpoint was saved; testing the weights of the last step.")
        title = "Test results (best checkpoint)" if best_path else "Test results (last weights)"
        test_and_report(cfg, trainer, model, datamodule, title, {"best_checkpoint": best_path, **training},
                        ckpt_path=best_path or None)
    value = best_score(checkpoint) if best_path else None
    if value is None:  # nothing monitored: the last epoch's value
        value = trainer.callback_metrics.get(cfg.optimized_metric)
    return None if value is None else float(value)


def checked_checkpoint(ckpt_path: str | None) -> str | None:
    """The checkpoint to resume from, read and checked before any data work (a URL fetched and
    verified once), as the local file Lightning then reads again through mgr's CheckpointIO;
    Lightning's keywords (`last`) as they are."""
    from mgr.models.checkpoints import local_checkpoint, read_checkpoint

    if ckpt_path is None or str(ckpt_path) in ("last", "best", "hpc", "registry"):
        return ckpt_path
    read_checkpoint(ckpt_path)
    return str(local_checkpoint(ckpt_path))


def cache_embeddings(model, datamodule, device, batch_size: int) -> None:
    """A frozen pretrained encoder is a fixed function of the chunk: its layers are computed once per
    chunk into the embedding cache (mgr.data.embeddings), on the device the run trains on, and the
    data module feeds the probe those instead of waveforms."""
    from mgr.data.embeddings import ChunkEmbeddings
    from mgr.encoders.pretrained import PretrainedEncoder

    encoder = model.encoder
    if not isinstance(encoder, PretrainedEncoder) or encoder.finetune or not encoder.cache_embeddings:
        return
    datamodule.setup("fit")
    encoder.to(device)
    store = ChunkEmbeddings.build(datamodule.cache, datamodule.embedding_chunks(), datamodule.chunk, encoder.identity,
                                  encoder.layer_dims, encoder.layers, datamodule.hparams.cache_dir,
                                  device=device, batch_size=batch_size, name=encoder.settings["name"])
    encoder.cpu()
    datamodule.use_embeddings(*encoder.cached_input(store))  # every layer is cached; the encoder says which it takes


def best_score(checkpoint) -> float | None:
    """The monitored value of the best checkpoint, the value a sweeper optimises. A ddp_spawn
    worker sends the main process only the best checkpoint's path (Lightning's launcher leaves
    the score behind), so there the score is read from the callback state that checkpoint saved."""
    from mgr.models import read_checkpoint

    score = checkpoint.best_model_score
    if score is None:
        score = read_checkpoint(checkpoint.best_model_path)["callbacks"][checkpoint.state_key]["best_model_score"]
    return None if score is None else float(score)


main = command("train", train)


if __name__ == "__main__":
    main()

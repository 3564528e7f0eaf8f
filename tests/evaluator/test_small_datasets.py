"""A slow simulator's few thousand rows still get a trained evaluator: smaller batches and
enough optimiser steps, while the default dataset's schedule is left as configured."""

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping

from evaluator.data import PairsDataModule
from evaluator.model import EvaluatorModule
from evaluator.train import train
from evaluator.validate import ValidationConfig


def _trainer(max_epochs, callbacks=()):
    return L.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, callbacks=list(callbacks))


def test_a_small_dataset_gets_smaller_batches_at_least_min_batches_per_epoch(small_dataset):
    data = PairsDataModule(str(small_dataset), batch_size=1024, min_batches_per_epoch=16)
    data.setup("fit")
    assert data.rows["train"] > 1024  # one or two full batches without the rule
    assert data.train_batch_size == -(-data.rows["train"] // 16)
    assert len(data.train_dataloader()) == 16
    unchanged = PairsDataModule(str(small_dataset), batch_size=64, min_batches_per_epoch=16)
    unchanged.setup("fit")
    assert unchanged.train_batch_size == 64  # already small enough: left alone


def test_min_steps_raises_the_epochs_of_a_small_dataset_and_says_so(small_dataset, tmp_path):
    lines = []
    trainer = _trainer(max_epochs=2)
    data = PairsDataModule(str(small_dataset), batch_size=1024, min_batches_per_epoch=4)
    result = train(EvaluatorModule(depth=1, width=16, area_depth=1, area_width=8), data, trainer, tmp_path,
                   validation=ValidationConfig(ood_pairs=0, baselines=(), plots=False), log=lines.append,
                   min_steps=40)
    assert trainer.fit_loop.max_epochs == 10  # 4 batches per epoch: 10 epochs make 40 steps
    assert trainer.global_step == 40
    assert any("training 10 epochs instead of 2 to reach min_steps = 40" in line for line in lines)
    assert result.evaluator is not None


def test_a_schedule_that_already_holds_min_steps_is_left_alone(small_dataset, tmp_path):
    trainer = _trainer(max_epochs=3)
    data = PairsDataModule(str(small_dataset), batch_size=256, min_batches_per_epoch=1)
    train(EvaluatorModule(depth=1, width=16, area_depth=1, area_width=8), data, trainer, tmp_path,
          validation=ValidationConfig(ood_pairs=0, baselines=(), plots=False), log=lambda line: None, min_steps=5)
    assert trainer.fit_loop.max_epochs == 3


def test_early_stopping_waits_as_many_steps_when_the_epochs_are_raised(small_dataset, tmp_path):
    """Patience counts epochs: raised five-fold with the epochs, it covers the same optimiser
    steps, and a validation loss that stops improving for an epoch or two ends nothing early
    (before: patience 1 stopped this run after a few of its 10 epochs)."""
    stopping = EarlyStopping(monitor="val_loss", mode="min", patience=1, min_delta=1.0)  # no epoch "improves"
    lines = []
    trainer = _trainer(max_epochs=2, callbacks=[stopping])
    data = PairsDataModule(str(small_dataset), batch_size=1024, min_batches_per_epoch=4)
    train(EvaluatorModule(depth=1, width=16, area_depth=1, area_width=8), data, trainer, tmp_path,
          validation=ValidationConfig(ood_pairs=0, baselines=(), plots=False), log=lines.append, min_steps=40)
    assert stopping.patience == 5
    assert trainer.current_epoch == 6  # stopped by patience 5 after the first epoch, not by patience 1
    assert any("early-stopping patience 5 epochs" in line for line in lines)


def test_the_checkpoint_follows_the_regression_loss_without_the_feasibility_term(small_dataset):
    """``val_loss_regression`` (what dance-train and dance-active checkpoint and stop on) is the
    weighted regression parts alone: the feasibility weight moves ``val_loss``, never it."""
    import torch

    from evaluator.model import SELECTION_MONITOR

    data = PairsDataModule(str(small_dataset), batch_size=256)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    totals, regressions = [], []
    for feasible_weight in (0.1, 10.0):
        torch.manual_seed(0)
        model = EvaluatorModule(depth=1, width=16, area_depth=1, area_width=8, ensemble=2,
                                loss_weights={"feasible": feasible_weight, "energy": 2.0})
        model.set_statistics(data.statistics)
        with torch.no_grad():
            total, parts = model._losses(batch)
        expected = parts["loss_latency"] + 2.0 * parts["loss_energy"] + parts["loss_area"]
        assert float(parts["loss_regression"]) == float(expected)
        assert float(total) == float(expected + feasible_weight * parts["loss_feasible"])
        assert float(parts["loss_feasible"]) > 0
        totals.append(float(total))
        regressions.append(float(parts["loss_regression"]))
    assert totals[0] != totals[1] and regressions[0] == regressions[1]
    assert SELECTION_MONITOR == "val_loss_regression"


def test_dance_train_checkpoints_and_stops_on_the_selection_monitor():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from evaluator.model import SELECTION_MONITOR

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["dataset=unused"])
    assert cfg.callbacks.early_stopping.monitor == SELECTION_MONITOR
    assert cfg.callbacks.model_checkpoint.monitor == SELECTION_MONITOR

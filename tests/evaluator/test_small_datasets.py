"""A slow simulator's few thousand rows still get a trained evaluator: smaller batches and
enough optimiser steps, while the default dataset's schedule is left as configured."""

import lightning as L

from evaluator.data import PairsDataModule
from evaluator.model import EvaluatorModule
from evaluator.train import train
from evaluator.validate import ValidationConfig


def _trainer(max_epochs):
    return L.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False)


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

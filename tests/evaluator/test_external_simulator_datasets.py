"""A dataset made by an external simulator (the command adapter, over its real subprocess
protocol) trains an evaluator that records and imitates that simulator."""

import sys
from pathlib import Path

import lightning as L
from omegaconf import OmegaConf

import dataset_gen.generate as generate_module
import evaluator
from dataset_gen.common.config import compose_config
from dataset_gen.generate import generate
from evaluator.data import PairsDataModule
from evaluator.model import EvaluatorModule
from evaluator.train import train
from evaluator.validate import ValidationConfig

EXAMPLE = [sys.executable, str(Path(__file__).resolve().parents[2] / "examples" / "adapters"
                               / "builtin_over_protocol.py")]


def test_an_evaluator_trains_on_a_command_adapters_dataset_and_records_that_simulator(tmp_path):
    command = ",".join(f"'{part}'" for part in EXAMPLE)
    config = compose_config("gen", ["space=small", "n_samples=400", "workers=1", "progress=false",
                                    "layers.input_sizes=[32]", "simulator=command",
                                    f"simulator.command=[{command}]", f"out={tmp_path / 'data'}"])
    try:
        made = generate(OmegaConf.to_container(config, resolve=True))
    finally:  # the worker-process cache holds the command's process in this (test) process
        for adapter in generate_module._ADAPTERS.values():
            adapter.close()
        generate_module._ADAPTERS.clear()
    assert made.rows == 400 and made.errors == 0 and made.simulator == "command"

    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    result = train(EvaluatorModule(depth=1, width=16, area_depth=1, area_width=8),
                   PairsDataModule(str(tmp_path / "data"), batch_size=64), trainer, tmp_path / "run",
                   validation=ValidationConfig(ood_pairs=0, baselines=(), plots=False), log=lambda line: None)
    loaded = evaluator.load(result.artifact)
    assert loaded.simulator["name"] == "command"
    assert loaded.simulator["settings"]["command"] == EXAMPLE
    assert loaded.simulator["version"].startswith("command dance-builtin")

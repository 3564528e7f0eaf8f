"""Shared fixtures of the search tests: a small *real* evaluator, trained once per session.

The evaluator is trained the way a user would train one for a search: the search's design
space is exported (`search.export`), a small simulator dataset is generated from it with
`dataset_gen.generate.generate`, and `evaluator.train.train` fits and freezes it. Nothing
is faked: every hardware number the tests check comes from the simulator, or from this
evaluator checked against it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf"
# The smoke-sized search of conf/experiment/fast.yaml: 2 blocks x 3 candidates, 16 accelerators.
FAST = ["+experiment=fast"]
# The fast search with a precision search: every block at 4, 8 or 16 bits, fixed or scalable PEs.
BITWIDTH = ["network.precision=[4,8,16]", "hw.choices.pe_kind=[fixed,scalable]"]


def search_settings(*overrides: str, evaluator: str | None = None) -> dict:
    """The resolved dance-search config for the fast experiment plus overrides."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="search", overrides=[*FAST, "out=unused", *overrides,
                                                       *([f"evaluator={evaluator}"] if evaluator else [])])
    return OmegaConf.to_container(cfg, resolve=True)


def train_search_evaluator(root: Path, n_samples: int, depth: int, width: int, epochs: int, batch_size: int,
                           simulator: dict | None = None, overrides: tuple[str, ...] = ()) -> str:
    """Export the fast search's space (plus ``overrides``), simulate ``n_samples`` pairs from it
    (with ``simulator``, default builtin), train a small evaluator on them and return its
    artifact's path."""
    import lightning as L

    from dataset_gen.generate import generate
    from evaluator.data import PairsDataModule
    from evaluator.model import EvaluatorModule
    from evaluator.train import train
    from evaluator.validate import ValidationConfig
    from search.export import generation_config, generation_space, write_layer_pool
    from search.hardware import AcceleratorSpace
    from search.network_space import NetworkSpace

    settings = search_settings(*overrides)
    space = NetworkSpace.from_config(settings["network"], 1, 10)
    hw_space = AcceleratorSpace.from_config(settings["hw"]["choices"])
    table = space.layer_table(settings["search"]["deploy"]["resolution"])
    pool = write_layer_pool(table, root / "layers.csv")
    config = generation_config(root / "data", pool, generation_space(hw_space, table), n_samples=n_samples, mix=0.2,
                               seed=0, workers=1)
    if simulator is not None:
        config["simulator"] = simulator
    generate(config)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    result = train(EvaluatorModule(depth=depth, width=width, lr=5e-3),
                   PairsDataModule(str(root / "data"), batch_size=batch_size), trainer, root / "trained", seed=0,
                   validation=ValidationConfig(ood_pairs=0, baselines=[], plots=False), log=lambda *_: None)
    return str(result.artifact)


@pytest.fixture(scope="session")
def evaluator_path(tmp_path_factory) -> str:
    """A small evaluator trained on the fast experiment's layers and accelerators."""
    return train_search_evaluator(tmp_path_factory.mktemp("evaluator"), n_samples=3000, depth=3, width=96,
                                  epochs=20, batch_size=512)


@pytest.fixture(scope="session")
def context(evaluator_path, tmp_path_factory):
    """A search context of the fast experiment (data, spaces, evaluator, simulator, reference)."""
    from search.context import build_context

    return build_context(search_settings(evaluator=evaluator_path), tmp_path_factory.mktemp("context"))


@pytest.fixture(scope="session")
def bitwidth_evaluator_path(tmp_path_factory) -> str:
    """A small evaluator of the fast experiment's space with precisions 4/8/16 on fixed and
    scalable PEs (`BITWIDTH`)."""
    return train_search_evaluator(tmp_path_factory.mktemp("bitwidth_evaluator"), n_samples=3000, depth=3, width=96,
                                  epochs=20, batch_size=512, overrides=tuple(BITWIDTH))


@pytest.fixture(scope="session")
def bitwidth_context(bitwidth_evaluator_path, tmp_path_factory):
    """A search context of the fast experiment with a precision search (`BITWIDTH`)."""
    from search.context import build_context

    return build_context(search_settings(*BITWIDTH, evaluator=bitwidth_evaluator_path),
                         tmp_path_factory.mktemp("bitwidth_context"))

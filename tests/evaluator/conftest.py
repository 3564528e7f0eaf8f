"""Small real datasets, made once per test session by the real generator and simulator."""

import pytest

from dataset_gen.cli_gen import load_config
from dataset_gen.generate import generate


def make_dataset(out, n_samples, *overrides):
    """A dance-gen dataset in the small space (fast to simulate), written to ``out``."""
    generate(load_config(["space=small", f"n_samples={n_samples}", "shard_rows=1000", "workers=1",
                          "progress=false", "layers.input_sizes=[32]", f"out={out}", *overrides]))
    return out


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """3000 simulated pairs in three shards."""
    return make_dataset(tmp_path_factory.mktemp("evaluator-data") / "small", 3000)


@pytest.fixture(scope="session")
def other_space_dataset(tmp_path_factory):
    """A few pairs from another design space (a narrower PE-array range)."""
    return make_dataset(tmp_path_factory.mktemp("evaluator-data") / "other", 300, "space.accelerator.pe_rows.max=4")


@pytest.fixture(scope="session")
def unmappable_dataset(tmp_path_factory):
    """60 pairs none of which maps: a 1-byte register file holds fewer words than any dataflow needs."""
    return make_dataset(tmp_path_factory.mktemp("evaluator-data") / "unmappable", 60, "space.accelerator.rf_bytes=[1]")


@pytest.fixture(scope="session")
def ten_pairs_dataset(tmp_path_factory):
    """10 pairs: too few for a train / validation / test split."""
    return make_dataset(tmp_path_factory.mktemp("evaluator-data") / "ten", 10)


def train_tiny(dataset, out, ensemble=None):
    """A tiny evaluator trained for one epoch (no OOD set, no baselines); ``ensemble``: members
    (default: EvaluatorModule's, the default config's)."""
    import lightning as L

    from evaluator.data import PairsDataModule
    from evaluator.model import EvaluatorModule
    from evaluator.train import train
    from evaluator.validate import ValidationConfig

    L.seed_everything(0, verbose=False)  # the members' initial weights
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    model = EvaluatorModule(depth=2, width=32, area_depth=1, area_width=16,
                            **({} if ensemble is None else {"ensemble": ensemble}))
    data = PairsDataModule(str(dataset), batch_size=256)
    return train(model, data, trainer, out, validation=ValidationConfig(ood_pairs=0, baselines=(), plots=False),
                 log=lambda line: None)


@pytest.fixture(scope="session")
def trained(small_dataset, tmp_path_factory):
    """A tiny evaluator (the default deep ensemble) trained for one epoch on the small dataset."""
    return train_tiny(small_dataset, tmp_path_factory.mktemp("evaluator-run"))


@pytest.fixture(scope="session")
def trained_single(small_dataset, tmp_path_factory):
    """The same, as a single network (``model.ensemble = 1``: no uncertainty)."""
    return train_tiny(small_dataset, tmp_path_factory.mktemp("evaluator-single"), ensemble=1)


@pytest.fixture(scope="session")
def precision_dataset(tmp_path_factory):
    """1500 pairs of the small space with sampled layer precision and PE kind."""
    return make_dataset(tmp_path_factory.mktemp("evaluator-data") / "precision", 1500,
                        "+space.layer.w_bits=[4,8,16]", "+space.layer.a_bits=[4,8,16]",
                        "+space.accelerator.pe_kind=[fixed,scalable]")

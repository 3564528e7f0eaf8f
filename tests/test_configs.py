"""Every Hydra config file composes, so that none rots unnoticed."""

from pathlib import Path

import pytest
from hydra import compose as compose_hydra
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from dataset_gen.common.config import compose_config, config_dir
from dataset_gen.common.cpus import allowed_cpus

CONF = Path(__file__).resolve().parents[1] / "conf"
PRIMARY = sorted(p.stem for p in CONF.glob("*.yaml"))
# Groups that are alternatives picked by a primary config's defaults list (top-level files
# of a folder; nested folders are groups of their own, e.g. hydra/launcher).
GROUP_OPTIONS = sorted(
    (str(path.parent.relative_to(CONF)), path.stem)
    for path in CONF.rglob("*.yaml")
    if path.parent != CONF and not path.parent.relative_to(CONF).parts[0] == "hydra"
)


def test_conf_has_one_primary_config_per_hydra_app():
    assert {"gen", "train", "search"} <= set(PRIMARY)


@pytest.mark.parametrize("name", PRIMARY)
def test_primary_config_composes_and_resolves(name):
    cfg = compose(name)
    OmegaConf.to_container(cfg, resolve=False)
    assert len(cfg) > 0


@pytest.mark.parametrize("group,option", GROUP_OPTIONS)
def test_every_group_option_composes_with_some_primary_config(group, option):
    if group.startswith("experiment") or group.startswith("hparams_search"):
        override = [f"+{group}={option}"]
    else:
        override = [f"{group}={option}"]
    errors = []
    for name in PRIMARY:
        try:
            compose(name, override)
            return
        except Exception as error:  # noqa: BLE001 - we report every primary's reason
            errors.append(f"{name}: {error}")
    pytest.fail(f"{group}={option} composes with no primary config:\n" + "\n".join(errors))


def compose_with_hydra(name, overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose_hydra(config_name=name, overrides=list(overrides), return_hydra_config=True)


def test_the_commands_find_the_configs_as_the_installed_package_dance_conf():
    assert config_dir().resolve() == CONF.resolve()  # the editable install maps conf/ in place
    assert compose_config("train", ["dataset=/d"]).datamodule.path == "/d"


# Every launcher the README and docs/search.md name; ray needs its optional plugin.
LAUNCHERS = {
    "joblib_cpus": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "joblib": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "ray": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_every_documented_launcher_composes_with_dance_search(launcher):
    if launcher == "ray":
        pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the optional hydra-ray-launcher")
    cfg = compose_with_hydra("search", ["evaluator=e", f"hydra/launcher={launcher}"])
    assert cfg.hydra.launcher._target_ == LAUNCHERS[launcher]
    OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_parallel_sweep_jobs_default_to_the_free_cpus_never_more_than_allowed():
    cfg = compose_with_hydra("search", ["evaluator=e"])
    assert cfg.hydra.launcher._target_ == LAUNCHERS["joblib"]
    assert 1 <= cfg.hydra.launcher.n_jobs <= allowed_cpus()
    assert compose_with_hydra("search", ["hydra.launcher.n_jobs=7"]).hydra.launcher.n_jobs == 7


def test_usable_cpus_resolver_caps_an_explicit_count_at_the_allowed_cpus():
    resolved = OmegaConf.create({"few": "${usable_cpus:1}", "many": "${usable_cpus:100000}"})
    assert resolved.few == 1 and resolved.many == allowed_cpus()


def test_dance_train_and_dance_validate_share_one_validation_block():
    train = compose("train", ["dataset=/d"])
    validate = compose("validate", ["artifact=a", "dataset=/d"])
    assert OmegaConf.to_container(train.validation) == OmegaConf.to_container(validate.validation)
    holding = [str(path.relative_to(CONF)) for path in CONF.rglob("*.yaml") if "ood_pairs:" in path.read_text()]
    assert holding == ["validation/default.yaml"]


def test_each_command_line_name_means_one_thing():
    train = compose("train", ["dataset=/d", "datamodule=streaming"])
    assert train.dataset == "/d" and train.datamodule.path == "/d" and train.datamodule.in_memory is False
    search = compose("search", ["evaluator=e", "task=cifar10", "task.root=/c", "network=tiny", "hw=small"])
    assert search.task.name == "cifar10" and search.task.root == "/c"
    assert "stages" in search.network and "choices" in search.hw
    assert "data" not in search.search and "space" not in search.search
    assert compose("gen", ["space=small"]).space.name == "small"
    # the old names are gone, not aliased
    assert not (CONF / "data").exists() and not (CONF / "search" / "data").exists()
    for name, override in (("train", "data=/d"), ("search", "data=cifar10")):
        with pytest.raises(Exception, match="data"):
            compose(name, [override])


def compose(name, overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose_hydra(config_name=name, overrides=list(overrides))


@pytest.mark.parametrize("option,rows", [("builtin", 10000), ("zigzag", 100), ("command", 100), ("scalesim", 20)])
def test_a_slow_simulator_defaults_to_small_shards_and_the_command_line_still_wins(option, rows):
    """Shards are the unit of parallel work: 1,500 ZigZag pairs in one 10,000-row shard would
    keep every worker but one idle."""
    chosen = compose_config("gen", [f"simulator={option}"])
    assert chosen.simulator.name == option and chosen.shard_rows == rows
    assert compose_config("gen", [f"simulator={option}", "shard_rows=7"]).shard_rows == 7


@pytest.mark.parametrize("option,pe_kinds,bits", [("builtin", ["fixed", "scalable"], [4, 8, 16]),
                                                  ("zigzag", ["fixed"], [4, 8, 16]),
                                                  ("scalesim", ["fixed"], [0])])
def test_an_external_simulator_samples_only_what_it_models(option, pe_kinds, bits):
    """ZigZag has no precision-scalable MAC, SCALE-Sim no precision at all: by default their
    datasets leave those pairs out instead of filling up with error rows."""
    chosen = compose_config("gen", [f"simulator={option}"])
    assert list(chosen.space.accelerator.pe_kind) == pe_kinds
    assert list(chosen.space.layer.w_bits) == bits and list(chosen.space.layer.a_bits) == bits
    overridden = compose_config("gen", [f"simulator={option}", "space.accelerator.pe_kind=[scalable]"])
    assert list(overridden.space.accelerator.pe_kind) == ["scalable"]  # the command line still wins

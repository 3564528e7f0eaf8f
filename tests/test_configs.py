"""Every Hydra config file composes, so that none rots unnoticed."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
PRIMARY = sorted(p.stem for p in CONF.glob("*.yaml"))
# Groups that are alternatives picked by a primary config's defaults list (top-level files
# of a folder; nested folders are groups of their own, e.g. search/space).
GROUP_OPTIONS = sorted(
    (str(path.parent.relative_to(CONF)), path.stem)
    for path in CONF.rglob("*.yaml")
    if path.parent != CONF and path.parent.name not in ("hydra",)
)


def test_conf_has_one_primary_config_per_hydra_app():
    assert {"gen", "train", "search"} <= set(PRIMARY)


@pytest.mark.parametrize("name", PRIMARY)
def test_primary_config_composes_and_resolves(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=name)
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
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                compose(config_name=name, overrides=override)
            return
        except Exception as error:  # noqa: BLE001 - we report every primary's reason
            errors.append(f"{name}: {error}")
    pytest.fail(f"{group}={option} composes with no primary config:\n" + "\n".join(errors))

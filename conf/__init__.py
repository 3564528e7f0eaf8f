"""The Hydra configs of every command, installed as the package ``dance_conf``.

``pyproject.toml`` maps this folder to that package so that the configs ship in the wheel;
`dataset_gen.common.config` is how the commands find them (``pkg://dance_conf``).
"""

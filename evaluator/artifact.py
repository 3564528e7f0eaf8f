"""The evaluator artifact: one file, loaded with ``torch.load(weights_only=True)``.

Layout (a plain dict of tensors, strings, numbers, lists and dicts, so loading never runs
code from the file):

``format``            ``"dance-evaluator"``
``format_version``    `FORMAT_VERSION` (2; version 1 files still load, see below)
``package_version``   the writing package's version
``network_config``    `EvaluatorNetwork` constructor arguments (``ensemble``: K members)
``state_dict``        weights and normalisation buffers (``layer_mean`` ... ``target_std``);
                      member i's weights are ``trunks.i.*`` and ``areas.i.*``
``calibration``       the uncertainty calibration (`evaluator.validate.calibrate`): ``scale``
                      per target (``latency``, ``energy``, ``area``; the std of ln prediction
                      is scale x the ensemble's spread), ``method``, ``split``, ``n``, the
                      validation coverage it reached, and (``bands``) the departure and tie
                      scales and the std ``floor`` (`evaluator.predictor`); empty for a
                      single network
``feature_spec``      `evaluator.features.feature_spec()` at training time
``targets``           ``{"latency": "total_cycles", "energy": "energy_pj", "area": "area_mm2"}``
``simulator``         the identity of the simulator it imitates (``name``, ``version``,
                      ``settings``: `Evaluator.simulator`); artifacts written before
                      adapters lack it and imitate ``builtin``
``dataset_metadata``  the training dataset's metadata (simulator version, space hash, ...)
``metrics``           the validation report (`evaluator.report`)
``extra``             training config, split definition, anything else JSON-like

Version 1 (before deep ensembles) held one network: its weights are ``trunk.*`` and
``area.*``, its config has no ``ensemble``, and there is no ``calibration``. `load` reads
it as an ensemble of one member (``trunk.`` -> ``trunks.0.``, ``area.`` -> ``areas.0.``),
which predicts exactly as before and has no uncertainty (NaN std).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from dataset_gen import __version__ as package_version
from dataset_gen.adapters import AdapterError, adapter_version
from dataset_gen.common.errors import UserError
from dataset_gen.common.files import atomic_write, json_safe
from dataset_gen.reader import installed_simulator_version, simulator_identity
from evaluator.features import feature_spec
from evaluator.network import TARGET_COLUMNS, EvaluatorNetwork, single_network_names
from evaluator.predictor import Evaluator

FORMAT = "dance-evaluator"
FORMAT_VERSION = 2
_REQUIRED_KEYS = ("format", "format_version", "network_config", "state_dict", "feature_spec", "targets")


class EvaluatorLoadError(UserError):
    """An artifact that cannot be loaded: missing, corrupt, foreign or incompatible."""


def save(evaluator: Evaluator, path: str | os.PathLike) -> Path:
    """Write ``evaluator`` to ``path`` atomically (temporary name, then rename).

    Parameters
    ----------
    evaluator : Evaluator
        The trained evaluator with its dataset metadata and metrics.
    path : str or PathLike
        Destination file (conventionally ``evaluator.pt``); parent folders are created.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": package_version,
        "network_config": json_safe(evaluator.network.config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in evaluator.network.state_dict().items()},
        "feature_spec": feature_spec(),
        "targets": dict(TARGET_COLUMNS),
        "simulator": json_safe(evaluator.simulator),
        "dataset_metadata": json_safe(evaluator.dataset_metadata),
        "metrics": json_safe(evaluator.metrics),
        "extra": json_safe(evaluator.extra),
        "calibration": json_safe(evaluator.calibration),
    }
    return atomic_write(path, lambda stream: torch.save(payload, stream))


def load(path: str | os.PathLike) -> Evaluator:
    """Load a frozen `Evaluator` from one artifact file.

    Parameters
    ----------
    path : str or PathLike
        A file written by `save` (``dance-train`` writes ``out/evaluator.pt``).

    Returns
    -------
    Evaluator
        In eval mode, every parameter with ``requires_grad = False``.

    Raises
    ------
    EvaluatorLoadError
        The file is missing, unreadable, not an evaluator artifact, written by a newer
        format (version 1 files, from before ensembles, load as one member), encoded with other features (another `ANALYTIC_VERSION` included), trained on
        data of another version of its simulator than the installed one (its own adapter's:
        builtin for artifacts older than adapters; an adapter whose tool is not installed
        is not compared, with a `dataset_gen.reader.SimulatorNotInstalledWarning`), or its
        weights do not fit its network; the message names the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluatorLoadError(f"{path}: no such evaluator artifact (file not found)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any reason means "not a readable artifact"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EvaluatorLoadError(
            f"{path}: not a readable evaluator artifact (torch.load with weights_only=True failed: {reason})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise EvaluatorLoadError(f"{path}: not a dance evaluator artifact (format is {found!r}, expected {FORMAT!r})")
    missing = [key for key in _REQUIRED_KEYS if key not in payload]
    if missing:
        raise EvaluatorLoadError(f"{path}: evaluator artifact is missing {missing}")
    if not isinstance(payload["format_version"], int) or payload["format_version"] > FORMAT_VERSION:
        raise EvaluatorLoadError(
            f"{path}: artifact format version {payload['format_version']!r} is newer than this package "
            f"reads ({FORMAT_VERSION}); upgrade the package"
        )
    if payload["feature_spec"] != feature_spec():
        raise EvaluatorLoadError(
            f"{path}: the artifact was trained on another feature encoding than this package's "
            f"(artifact: {json.dumps(payload['feature_spec'])[:300]}); retrain it with this version"
        )
    metadata = payload.get("dataset_metadata") or {}
    if isinstance(metadata, dict) and isinstance(payload.get("simulator"), dict):
        metadata = {**metadata, "simulator": payload["simulator"]}  # the explicit record wins
    _check_simulator_version(path, metadata)
    if payload["targets"] != dict(TARGET_COLUMNS):
        raise EvaluatorLoadError(f"{path}: unknown targets {payload['targets']!r}, expected {dict(TARGET_COLUMNS)!r}")
    if payload["format_version"] < 2:
        payload = _upgrade_v1(payload)
    try:
        network = EvaluatorNetwork(**payload["network_config"])
    except (TypeError, ValueError) as error:
        raise EvaluatorLoadError(f"{path}: invalid network_config {payload['network_config']!r}: {error}") from None
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvaluatorLoadError(f"{path}: state_dict is not a dict of tensors")
    if "base_loopnest" not in state:  # written before the loop-nest base: off
        state = {**state, "base_loopnest": torch.zeros_like(network.base_loopnest)}
    elif state["base_loopnest"].numel() < network.base_loopnest.numel():
        # written before the loop nest's cycles: its objective 0 (least energy), cycles not followed
        old = state["base_loopnest"].reshape(-1)
        state = {**state, "base_loopnest": torch.cat([old, torch.zeros(network.base_loopnest.numel() - old.numel(),
                                                                       dtype=old.dtype)])}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise EvaluatorLoadError(f"{path}: weights do not fit the stored network config: {' '.join(first)[:400]}") from None
    bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise EvaluatorLoadError(f"{path}: non-finite values in {bad[:5]}")
    calibration = payload.get("calibration") or {}
    if not isinstance(calibration, dict):
        raise EvaluatorLoadError(f"{path}: calibration is {type(calibration).__name__}, expected a dict")
    return Evaluator(network, metadata, payload.get("metrics") or {}, payload.get("extra") or {}, calibration)


def _upgrade_v1(payload: dict) -> dict:
    """A format-1 payload (one network) in format 2's layout: an ensemble of one member.

    The weights are renamed (`evaluator.network.single_network_names`), the config gains
    ``ensemble = 1``; there is no calibration (one network has no spread to calibrate).
    """
    state = payload["state_dict"]
    if isinstance(state, dict):
        state = single_network_names(state)
    config = payload["network_config"]
    if isinstance(config, dict):
        config = {**config, "ensemble": 1}
    return {**payload, "state_dict": state, "network_config": config, "calibration": {}}



def _check_simulator_version(path: Path, metadata: object) -> None:
    """Refuse an evaluator that imitates another version of its simulator than the installed one.

    Its training data recorded the simulator adapter (``simulator``; ``builtin`` for data
    older than adapters) and its version (``simulator_version``); predictions of an evaluator
    trained on other rules would silently be wrong. When that adapter's tool is not installed
    here, the version cannot be compared: a warning says so, and the evaluator loads, since
    predicting needs no simulator.
    """
    recorded = metadata.get("simulator_version") if isinstance(metadata, dict) else None
    identity = simulator_identity(metadata if isinstance(metadata, dict) else None)
    if recorded is None:
        raise EvaluatorLoadError(
            f"{path}: the artifact does not record the simulator version of its training data "
            f"(dataset_metadata.simulator_version); it cannot be checked against the installed simulator "
            f"{identity['name']} {_installed_text(identity)}: retrain it with dance-train"
        )
    installed = installed_simulator_version(identity, what=f"evaluator artifact {path}")  # None: warned
    if installed is not None and recorded != installed:
        raise EvaluatorLoadError(
            f"{path}: the artifact was trained on data of simulator {recorded} ({identity['name']}), but the "
            f"installed simulator is {installed} ({identity['name']}); retrain it with dance-train on a dataset "
            "of this simulator"
        )


def _installed_text(identity: dict) -> str:
    """The installed version of an adapter, or why there is none (for a message)."""
    try:
        return adapter_version(identity)
    except AdapterError as error:
        return f"(not installed: {error})"

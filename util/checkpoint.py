"""Checkpoint files: atomic writes, state-dict loading and strict loading of pretrained weights.

One weights format: ``X.pth`` is a plain state dict (parameter/buffer name -> tensor), exactly like
the official CrossPoint files, so the official files load into the project's models and the
project's files load into the original code. An optional sidecar ``X.json`` describes the model
(``{"model": ..., "model_args": {...}, "kind": ..., "config": {...}}``) so it can be rebuilt from
the files alone.
"""

import io
import json
import os
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from util.fileio import atomic_write_bytes, atomic_write_text

_MAX_LISTED_KEYS = 10


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file and a rename, so ``path`` is never partial.

    The object is serialized in memory first and then written with one plain ``write``, so a full disk
    surfaces as :class:`util.fileio.DiskFullError` naming ``path`` (torch's own writer would turn it into
    an opaque ``inline_container.cc`` error).
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def _strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that (Distributed)DataParallel adds, if every key has it."""
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module.") :]: value for key, value in state_dict.items()}
    return dict(state_dict)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict saved with ``torch.save`` onto the CPU, safely (``weights_only=True``).

    Args:
        path: a ``.pth`` file holding a plain state dict (official CrossPoint or project weights).
    Returns:
        name -> tensor, with a leading ``module.`` (DataParallel) removed from the names.
    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read as a weights-only pickle, or is not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found; check the path (e.g. --pretrained_path).")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(
            f"{path}: cannot be read as a PyTorch state dict (torch.load with weights_only=True failed: "
            f"{error}). Is it a complete .pth weights file?"
        ) from error
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path}: expected a non-empty dict of tensors (a state dict), got {type(obj).__name__}.")
    bad = [key for key, value in obj.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        hint = ""
        if any(isinstance(obj[key], Mapping) for key in bad):
            hint = " It looks like a training-state checkpoint; pass the plain weights file (*.pth state dict)."
        raise ValueError(
            f"{path}: not a plain state dict; entries that are not tensors: {_format_keys(bad)}.{hint}"
        )
    return _strip_module_prefix(obj)


def _sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, meta: dict | None = None) -> None:
    """Save a plain state dict to ``path`` and, if given, ``meta`` to the sidecar ``path.with_suffix('.json')``.

    Tensors are detached and moved to the CPU. Both files are written atomically. Without ``meta``
    a stale sidecar from an earlier save is removed, so a sidecar always describes its weights.
    """
    weights = {key: value.detach().cpu() for key, value in _strip_module_prefix(state_dict).items()}
    sidecar = _sidecar_path(path)
    if meta is not None:
        text = json.dumps(meta, indent=2, sort_keys=True) + "\n"  # Fails before anything is written.
    atomic_torch_save(weights, path)
    if meta is not None:
        atomic_write_text(sidecar, text)
    elif sidecar.exists():
        sidecar.unlink()


def read_weights_meta(path: str | os.PathLike) -> dict | None:
    """The sidecar JSON of weights file ``path`` as a dict, or None if there is no sidecar."""
    sidecar = _sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{sidecar}: invalid JSON in the weights sidecar ({error}); delete or fix it.") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{sidecar}: expected a JSON object in the weights sidecar, got {type(meta).__name__}.")
    return meta


@dataclass
class LoadReport:
    """Outcome of :func:`load_pretrained`.

    missing: model keys absent from the file that were allowed (left at their initial values).
    unexpected: file keys absent from the model that were allowed (ignored).
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def _format_keys(keys: list) -> str:
    shown = ", ".join(str(key) for key in keys[:_MAX_LISTED_KEYS])
    more = f" ... and {len(keys) - _MAX_LISTED_KEYS} more" if len(keys) > _MAX_LISTED_KEYS else ""
    return f"{len(keys)} key(s): {shown}{more}"


def _has_prefix(key: str, prefixes: Iterable[str]) -> bool:
    return any(key.startswith(prefix) for prefix in prefixes)


def load_pretrained(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
    allowed_missing_prefixes: Iterable[str] = (),
    allowed_unexpected_prefixes: Iterable[str] = (),
) -> LoadReport:
    """Load weights into ``model`` strictly, except for explicitly allowed missing/unexpected keys.

    Args:
        model: the model to load into (its device and dtype are kept).
        path_or_state_dict: a weights file (see :func:`load_state_dict_file`) or a state dict.
        allowed_missing_prefixes: model keys starting with one of these may be absent from the
            file; they keep their initial values and are reported as new (e.g. the part-seg head
            ``("conv7.", "conv8.", ...)`` when fine-tuning from a pretraining checkpoint).
            Include the trailing dot: "conv1" would also match "conv10".
        allowed_unexpected_prefixes: file keys starting with one of these may be absent from the
            model; they are ignored and reported.
    Returns:
        LoadReport with the allowed missing and unexpected keys.
    Raises:
        ValueError: listing any other missing or unexpected keys and any shape mismatch.
    """
    if isinstance(path_or_state_dict, Mapping):
        source = "the given state dict"
        state_dict = _strip_module_prefix(path_or_state_dict)
    else:
        source = str(path_or_state_dict)
        state_dict = load_state_dict_file(path_or_state_dict)
    allowed_missing_prefixes = tuple(allowed_missing_prefixes)
    allowed_unexpected_prefixes = tuple(allowed_unexpected_prefixes)

    model_state = model.state_dict()
    missing = [key for key in model_state if key not in state_dict]
    unexpected = [key for key in state_dict if key not in model_state]
    bad_missing = [key for key in missing if not _has_prefix(key, allowed_missing_prefixes)]
    bad_unexpected = [key for key in unexpected if not _has_prefix(key, allowed_unexpected_prefixes)]
    mismatched = [
        f"{key} (file {tuple(state_dict[key].shape)}, model {tuple(model_state[key].shape)})"
        for key in model_state
        if key in state_dict and state_dict[key].shape != model_state[key].shape
    ]
    problems = []
    if bad_missing:
        problems.append(f"missing from the file: {_format_keys(bad_missing)}")
    if bad_unexpected:
        problems.append(f"not in the model: {_format_keys(bad_unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {_format_keys(mismatched)}")
    if problems:
        raise ValueError(
            f"{source}: does not match {type(model).__name__}; "
            + "; ".join(problems)
            + ". Check that the model and its arguments (k, emb_dims, pretrain, arch) fit the checkpoint."
        )
    model.load_state_dict({key: value for key, value in state_dict.items() if key in model_state}, strict=False)
    return LoadReport(missing=missing, unexpected=unexpected)

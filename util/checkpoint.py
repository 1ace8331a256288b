"""Checkpoint files: atomic writes, weights with their sidecar, strict loading, and the training state of a run.

One weights format: ``X.pth`` is a plain state dict (parameter/buffer name -> tensor), exactly like
the official CrossPoint files, so the official files load into the project's models and the
project's files load into the original code. An optional sidecar ``X.json`` describes the model
(``{"model": ..., "model_args": {...}, "kind": ..., "config": {...}}``) so it can be rebuilt from
the files alone.
"""

import io
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from util import distributed
from util.fileio import InputFileError, atomic_write_bytes, atomic_write_text, read_json
from util.rng import get_rng_state

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


class CheckpointError(InputFileError):
    """A checkpoint file is unreadable, of the wrong kind, or does not fit the model built for it."""


def describe_load_error(error: BaseException) -> str:
    """A short reason for a failed ``torch.load``, without torch's advice to disable ``weights_only``.

    Loading an untrusted file with ``weights_only=False`` can execute arbitrary code, so this project
    never suggests it: only the unpickler's own complaint (or the first sentence) is kept.
    """
    text = " ".join(str(error).split())
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = text.split(marker, 1)[1]
        for stop in (" Please use", " Check the documentation"):
            reason = reason.split(stop, 1)[0]
        reason = reason.strip().rstrip(".")
        return reason or "a pickle that needs arbitrary code to load"
    first = text.split(". ", 1)[0].strip().rstrip(".")
    if "weights_only" in first or not first:
        return "a pickle that needs arbitrary code to load"
    return first


def torch_load_checked(path: str | os.PathLike, what: str, map_location: str | torch.device = "cpu") -> object:
    """``torch.load(path, weights_only=True)`` with one clear error naming the file on failure.

    Args:
        path: the file.
        what: what the file should be, for the message (e.g. "a .pth weights file").
        map_location: where tensors are put.
    Raises:
        FileNotFoundError: the file does not exist (or is a directory).
        CheckpointError: the file is empty (0 bytes) or not a readable PyTorch file (random bytes, truncated,
            or a pickle that would need arbitrary code), with a one-line message.
    """
    path = Path(path)
    if not path.is_file():
        state = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{path}: {state}; expected {what}.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: is empty (0 bytes); expected {what}. Its writing never finished (a copy "
                              "or download that failed); replace it with a complete copy.")
    try:
        with warnings.catch_warnings():
            # Garbage bytes can look like an unusual pickle protocol; torch then warns before failing.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    # torch's unpickler raises arbitrary exception types (IndexError, KeyError, ...) on garbage bytes.
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(
            f"{path}: cannot be read as {what}: torch.load(weights_only=True) refused it "
            f"({describe_load_error(error)}). The file is corrupt, truncated or not what was expected."
        ) from None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict saved with ``torch.save`` onto the CPU, safely (``weights_only=True``).

    Args:
        path: a ``.pth`` file holding a plain state dict (official CrossPoint or project weights).
    Returns:
        name -> tensor, with a leading ``module.`` (DataParallel) removed from the names.
    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError (a ValueError): the file cannot be read safely, or is not a dict of tensors.
    """
    path = Path(path)
    obj = torch_load_checked(path, "a .pth weights file (a plain state dict)")
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{path}: expected a non-empty dict of tensors (a state dict), got {type(obj).__name__}.")
    bad = [key for key, value in obj.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        hint = ""
        if any(isinstance(obj[key], Mapping) for key in bad):
            hint = " It looks like a training-state checkpoint; pass the plain weights file (*.pth state dict)."
        raise CheckpointError(
            f"{path}: not a plain state dict; entries that are not tensors: {_format_keys(bad)}.{hint}"
        )
    return _strip_module_prefix(obj)


# ----------------------------------------------------------------------------------------------
# The weights sidecar
# ----------------------------------------------------------------------------------------------

SIDECAR_VERSION = 1
_META_FIELDS = ("model", "kind", "model_args", "epoch", "source", "config", "version")
# Constructor arguments that are positive integers when a sidecar holds them.
_INT_MODEL_ARGS = ("k", "emb_dims", "num_classes", "num_parts")


@dataclass
class WeightsMeta:
    """The JSON sidecar ``X.json`` of a weights file ``X.pth``: enough to rebuild the model from the files.

    On disk it is one flat JSON object: the fields below plus the ``extra`` keys at the top level
    (e.g. ``class_choice``, ``seg_start_index``, ``metrics``, ``probe_val_acc``). Sidecars written before
    the ``version`` field existed have the same layout and read as version 1.

    Attributes:
        model: model name ("dgcnn", "dgcnn_seg", "pointnet", "resnet50", "dgcnn_partseg", "dgcnn_cls", ...).
        kind: what the weights are ("point_encoder", "image_encoder", "partseg", "classifier").
        model_args: constructor arguments, at least those not visible in the weights (k, ...).
        epoch: the epoch (0-based) the weights are from.
        source: the script that wrote them.
        config: the run's resolved configuration.
        extra: further fields (flat on disk).
        version: the sidecar schema version.
    """

    model: str | None = None
    kind: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    source: str | None = None
    config: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = SIDECAR_VERSION

    @staticmethod
    def path_for(weights_path: str | os.PathLike) -> Path:
        """The sidecar path of a weights file: ``X.pth`` -> ``X.json``."""
        return Path(weights_path).with_suffix(".json")

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON object written to disk (None fields omitted)."""
        out = {name: getattr(self, name) for name in _META_FIELDS if getattr(self, name) is not None}
        clash = sorted(set(self.extra) & set(_META_FIELDS))
        if clash:
            raise ValueError(f"WeightsMeta.extra may not redefine the fields {clash}.")
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "weights sidecar") -> "WeightsMeta":
        """Parse the flat JSON object (unknown keys go to ``extra``).

        Raises CheckpointError (a ValueError) naming ``source`` when a field has the wrong JSON type.
        """
        version = data.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version > SIDECAR_VERSION:
            raise CheckpointError(f"{source}: weights sidecar version {version!r} is not one this code reads "
                                  f"(<= {SIDECAR_VERSION}); update the code or delete the sidecar.")
        model_args = data.get("model_args") or {}
        if not isinstance(model_args, Mapping):
            raise CheckpointError(f"{source}: 'model_args' must be a JSON object, got {type(model_args).__name__}.")
        expected = {"model": str, "kind": str, "source": str, "epoch": int, "config": Mapping}
        wrong = [name for name, kind in expected.items() if data.get(name) is not None
                 and (not isinstance(data[name], kind) or isinstance(data[name], bool))]
        wrong += [f"model_args.{name}" for name in _INT_MODEL_ARGS if model_args.get(name) is not None
                  and (not isinstance(model_args[name], int) or isinstance(model_args[name], bool)
                       or model_args[name] < 1)]
        if wrong:
            raise CheckpointError(f"{source}: the weights sidecar has values of the wrong type ({', '.join(wrong)}); "
                                  "delete or fix it (it describes the weights file next to it).")
        return cls(model=data.get("model"), kind=data.get("kind"), model_args=dict(model_args),
                   epoch=data.get("epoch"), source=data.get("source"), config=data.get("config"),
                   extra={k: v for k, v in data.items() if k not in _META_FIELDS}, version=version)

    def to_json(self) -> str:
        """The sidecar text (fails on values JSON cannot hold)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def write(self, weights_path: str | os.PathLike) -> None:
        """Write the sidecar of ``weights_path`` atomically."""
        atomic_write_text(self.path_for(weights_path), self.to_json())

    @classmethod
    def read(cls, weights_path: str | os.PathLike) -> "WeightsMeta | None":
        """The sidecar of ``weights_path``, or None when there is none.

        Raises CheckpointError (one line naming the sidecar, which the command-line scripts print without a
        traceback) when it is not valid UTF-8 JSON, not a JSON object, or has fields of the wrong type.
        """
        sidecar = cls.path_for(weights_path)
        if not sidecar.is_file():
            return None
        data = read_json(sidecar, error=CheckpointError,
                         hint="it is the sidecar of the weights file next to it; delete or fix it")
        if not isinstance(data, dict):
            raise CheckpointError(f"{sidecar}: expected a JSON object in the weights sidecar, got "
                                  f"{type(data).__name__}; delete or fix it.")
        return cls.from_dict(data, source=str(sidecar))


def save_weights(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, meta: WeightsMeta | Mapping | None = None
) -> None:
    """Save a plain state dict to ``path`` and, if given, its sidecar (``path.with_suffix('.json')``).

    Tensors are detached and moved to the CPU. Both files are written atomically, the sidecar first: a
    kill between the two writes leaves the new sidecar beside the previous weights of the same run (same
    model settings), never weights without a sidecar. ``meta`` is a :class:`WeightsMeta` or its flat dict
    form. Without ``meta`` a stale sidecar from an earlier save is removed first, so a sidecar always
    describes its weights.
    """
    weights = {key: value.detach().cpu() for key, value in _strip_module_prefix(state_dict).items()}
    if meta is not None and not isinstance(meta, WeightsMeta):
        meta = WeightsMeta.from_dict(meta)
    text = meta.to_json() if meta is not None else None  # Fails before anything is written.
    sidecar = WeightsMeta.path_for(path)
    if text is not None:
        atomic_write_text(sidecar, text)
    elif sidecar.exists():
        sidecar.unlink()
    atomic_torch_save(weights, path)


def load_point_encoder_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta | None]:
    """(state dict, sidecar or None) of a point-encoder weights file.

    Raises CheckpointError naming the file when its sidecar says it holds something else (an image encoder,
    a classifier, ...), and as :func:`load_state_dict_file` does.
    """
    meta = WeightsMeta.read(path)
    if meta is None:
        meta = _meta_from_run_config(Path(path))
    if meta is not None and meta.kind not in (None, "point_encoder"):
        raise CheckpointError(
            f"{path}: its sidecar {WeightsMeta.path_for(path).name} says kind={meta.kind!r} (model "
            f"{meta.model!r}), not a point encoder. Pass a point-encoder checkpoint, e.g. "
            "<run>/checkpoints/point_encoder_best.pth or the published dgcnn_cls_best.pth")
    return load_state_dict_file(path), meta


def _meta_from_run_config(path: Path) -> WeightsMeta | None:
    """For ``<run>/checkpoints/point_encoder_*.pth`` without its sidecar (written by an older version, or cut
    off by a kill): the point-encoder settings of the run's ``config.json``, with a line on stderr saying so.
    None for any other file (published checkpoints carry no sidecar and no run)."""
    config_path = path.parent.parent / "config.json"
    if not (path.name.startswith("point_encoder_") and path.parent.name == "checkpoints" and config_path.is_file()):
        return None
    config = read_json(config_path, error=CheckpointError, hint="it is the configuration of the run that wrote "
                                                                 f"{path.name}")
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        return None
    model = config["model"]
    model_args = {name: config[name] for name in (("emb_dims",) if model == "pointnet" else ("k", "emb_dims"))
                  if isinstance(config.get(name), int)}
    print(f"NOTE: {path} has no sidecar {WeightsMeta.path_for(path).name}; using the settings of its run's "
          f"{config_path} instead (model={model}, {', '.join(f'{k}={v}' for k, v in model_args.items())})",
          file=sys.stderr, flush=True)
    return WeightsMeta(model=model, kind="point_encoder", model_args=model_args, source=str(config_path),
                       config=config)


def read_weights_meta(path: str | os.PathLike) -> dict | None:
    """The sidecar of weights file ``path`` in its flat dict form (see :class:`WeightsMeta`), or None."""
    meta = WeightsMeta.read(path)
    return None if meta is None else meta.to_dict()


# ----------------------------------------------------------------------------------------------
# Resolving model settings: flag > sidecar > what the weights show > default
# ----------------------------------------------------------------------------------------------

SOURCE_FLAG = "command line"
SOURCE_META = "checkpoint meta"


@dataclass
class ResolvedSettings:
    """Values of model settings and where each came from.

    values: name -> value. sources: name -> "command line" | "checkpoint meta" | what the weights showed
    (e.g. "state-dict shapes") | a default's description. conflicts: (name, flag value, sidecar value) for
    settings whose command-line value differs from the sidecar's.
    """

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    conflicts: list[tuple[str, Any, Any]] = field(default_factory=list)


def resolve_settings(
    names: Iterable[str],
    flags: Mapping[str, Any],
    meta: WeightsMeta | None,
    inferred: Mapping[str, tuple[Any, str]],
    defaults: Mapping[str, tuple[Any, str]],
) -> ResolvedSettings:
    """Decide each setting: command-line flag > sidecar > what the weights show > default.

    Args:
        names: the settings to resolve, in order. "model" is read from ``meta.model``, any other name
            from ``meta.model_args``.
        flags: name -> value given on the command line, or None when not given.
        meta: the weights' sidecar, or None.
        inferred: name -> (value, how it was inferred, e.g. "state-dict shapes") from the weights.
        defaults: name -> (value, description of the default, e.g. "published default (...)").
    Returns:
        ResolvedSettings; a name with no flag, sidecar value, inference or default is left out.
    """
    out = ResolvedSettings()
    for name in names:
        from_meta = None
        if meta is not None:
            from_meta = meta.model if name == "model" else meta.model_args.get(name)
        flag = flags.get(name)
        if flag is not None:
            out.values[name], out.sources[name] = flag, SOURCE_FLAG
            if from_meta is not None and from_meta != flag:
                out.conflicts.append((name, flag, from_meta))
        elif from_meta is not None:
            out.values[name], out.sources[name] = from_meta, SOURCE_META
        elif name in inferred:
            out.values[name], out.sources[name] = inferred[name]
        elif name in defaults:
            out.values[name], out.sources[name] = defaults[name]
    return out


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
        CheckpointError (a ValueError): listing any other missing or unexpected keys and any shape mismatch.
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
        raise CheckpointError(
            f"{source}: does not match {type(model).__name__}; "
            + "; ".join(problems)
            + ". Check that the model and its arguments (k, emb_dims, pretrain, arch) fit the checkpoint."
        )
    model.load_state_dict({key: value for key, value in state_dict.items() if key in model_state}, strict=False)
    return LoadReport(missing=missing, unexpected=unexpected)


def find_weights_file(path: str | os.PathLike, names: Iterable[str] = ("point_encoder_best.pth",)) -> Path:
    """A weights file, or a run directory holding one of ``names`` (directly or under ``checkpoints/``).

    Raises FileNotFoundError naming every place looked at.
    """
    p = Path(path)
    candidates = [p] + [d / name for name in names for d in (p, p / "checkpoints")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no weights file found (looked at {', '.join(map(str, candidates))}). Pass a "
                            ".pth state dict or the run directory of a pretraining run.")


def load_with_new_head(model: nn.Module, state_dict: Mapping[str, torch.Tensor], head_prefixes: tuple[str, ...],
                       source: str | os.PathLike) -> list[str]:
    """Load an encoder's weights into a fine-tuning network whose head (``head_prefixes``) is new.

    A state dict holding every head key is a fine-tuned model and is loaded strictly (returns []).
    Otherwise it must provide every key except the head's, and the new keys must be exactly the model's
    head keys (MoCo's check after a non-strict load).

    Returns:
        The new (randomly initialised) keys in the model's order.
    Raises:
        ValueError (from :func:`load_pretrained`): other keys missing or unexpected, or shapes differ.
        CheckpointError: the new keys are not exactly the head.
    """
    head_keys = [k for k in model.state_dict() if k.startswith(head_prefixes)]
    if head_keys and all(k in state_dict for k in head_keys):
        load_pretrained(model, state_dict)
        return []
    report = load_pretrained(model, state_dict, allowed_missing_prefixes=head_prefixes)
    if set(report.missing) != set(head_keys) or report.unexpected:
        raise CheckpointError(
            f"{source}: expected exactly the head ({', '.join(head_prefixes)}) to be new, got new keys "
            f"{sorted(report.missing)}, unexpected {report.unexpected}."
        )
    return head_keys


def summarize_keys(keys: Iterable[str]) -> str:
    """'conv7.* (6), conv8.* (6), ...' for a list of state-dict keys."""
    groups: dict[str, int] = {}
    for key in keys:
        top = key.split(".")[0]
        groups[top] = groups.get(top, 0) + 1
    return ", ".join(f"{name}.* ({n})" for name, n in groups.items())


# ----------------------------------------------------------------------------------------------
# The training state of a run (exact resume)
# ----------------------------------------------------------------------------------------------

TRAINING_STATE_VERSION = 1
TRAINING_STATE_NAME = "training_state_last.pt"


def save_training_state(
    path: str | os.PathLike,
    *,
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    epoch: int,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    config: Mapping[str, Any] | None = None,
    rng: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Atomically write everything needed to resume after ``epoch`` (the last finished epoch).

    Args:
        path: destination file (written to a temp file and renamed).
        models: name -> module; wrappers (DDP, torch.compile) are stripped before ``state_dict``.
        optimizer, scheduler, scaler: their ``state_dict`` is stored (scheduler/scaler may be None).
        epoch: the last completed epoch (0-based); resume continues at ``epoch + 1``.
        config: resolved run configuration (JSON-like: str/int/float/bool/None/list/dict).
        rng: RNG snapshot(s) from ``get_rng_state`` (one dict, or a list with one per rank);
            None takes this process's snapshot.
        extra: further JSON-like or tensor data (best metric, history, ...).

    The file loads with ``torch.load(weights_only=True)``.
    """
    state = {
        "version": TRAINING_STATE_VERSION,
        "epoch": int(epoch),
        "models": {name: distributed.unwrap(m).state_dict() for name, m in models.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng if rng is not None else get_rng_state(),
        "config": dict(config) if config is not None else None,
        "extra": dict(extra) if extra is not None else {},
    }
    atomic_torch_save(state, os.fspath(path))


def load_training_state(
    path: str | os.PathLike,
    *,
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    map_location: str | torch.device = "cpu",
    check_config: Callable[[Mapping[str, Any] | None], None] | None = None,
) -> dict[str, Any]:
    """Load a file written by ``save_training_state`` into the given objects (strict for models).

    RNG states are *not* restored here: the caller picks its rank's snapshot from ``state["rng"]``
    and calls ``set_rng_state`` at the point where the original run would continue.

    Args:
        check_config: called with the saved config before any weights are loaded (e.g. to refuse a
            resume whose model settings differ, with a message naming them).
    Returns:
        The whole state dict (``epoch``, ``config``, ``rng``, ``extra``, ...).
    Raises:
        FileNotFoundError / util.checkpoint.CheckpointError (one line naming the file): missing,
            unreadable or not a training state. KeyError / RuntimeError: a model's weights do not fit.
    """
    state = torch_load_checked(path, f"a training state ({TRAINING_STATE_NAME})", map_location=map_location)
    if not isinstance(state, dict) or state.get("version") != TRAINING_STATE_VERSION:
        raise CheckpointError(
            f"{path}: is not a training-state file (version {TRAINING_STATE_VERSION}); a weights-only "
            f"file (.pth) cannot resume training, pass {TRAINING_STATE_NAME} or its run directory."
        )
    if check_config is not None:
        check_config(state.get("config"))
    missing = sorted(set(models) - set(state["models"]))
    if missing:
        raise KeyError(f"{path} has no state for models {missing} (has {sorted(state['models'])}).")
    for name, model in models.items():
        distributed.unwrap(model).load_state_dict(state["models"][name], strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    return state

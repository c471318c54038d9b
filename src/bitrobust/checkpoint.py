"""Checkpoints: float weights in safetensors, with everything needed to rebuild and evaluate them.

The safetensors header's metadata records the architecture (model name, options, input shape),
the quantization scheme and how the model was trained, so ``bitrobust evaluate CKPT`` needs
nothing else. The stored weights are the trained float weights; the integer codes follow
deterministically from them and the scheme.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.models.architecture import Architecture
from bitrobust.quant import QuantScheme

FORMAT = "bitrobust-checkpoint/1"


@dataclass
class Checkpoint:
    """A trained float model with its architecture, quantization scheme and training record."""

    model: nn.Module
    architecture: Architecture
    scheme: QuantScheme
    training: dict[str, Any]


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    architecture: Architecture,
    scheme: QuantScheme,
    training: dict[str, Any],
) -> Path:
    """Write ``model``'s parameters and buffers with their metadata to a safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "architecture": json.dumps(asdict(architecture)),
        "quantization": json.dumps(scheme.to_dict()),
        "training": json.dumps(training),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; BitrobustError if it is unusable:
    missing, not a safetensors file, corrupt, of another architecture, or with NaN/Inf values."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        raise BitrobustError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise BitrobustError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises several types for corrupt files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BitrobustError(
            f"checkpoint {path} is corrupt or not a safetensors file ({reason})"
        ) from None
    if metadata.get("format") != FORMAT:
        raise BitrobustError(
            f"checkpoint {path} was not written by bitrobust (no '{FORMAT}' header)"
        )
    try:
        architecture = Architecture.from_dict(json.loads(metadata["architecture"]))
        scheme = QuantScheme.from_dict(json.loads(metadata["quantization"]))
        training = json.loads(metadata.get("training", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise BitrobustError(f"checkpoint {path} has unreadable metadata ({exc})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            kind = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
            raise BitrobustError(
                f"checkpoint {path} has {kind} values in tensor '{name}'; it cannot be evaluated "
                "(was training unstable?)"
            )
    try:
        model = architecture.build()
    except BitrobustError as exc:
        raise BitrobustError(f"checkpoint {path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise BitrobustError(
            f"checkpoint {path}: cannot build model '{architecture.model}' with options "
            f"{architecture.options} ({exc})"
        ) from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape
    )
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}")
        if wrong_shape:
            parts.append(f"wrong shape for {', '.join(wrong_shape[:3])}")
        raise BitrobustError(
            f"checkpoint {path} does not match architecture '{architecture.model}': "
            + "; ".join(parts)
        )
    model.load_state_dict(tensors)
    model.to(device).eval()
    return Checkpoint(model=model, architecture=architecture, scheme=scheme, training=training)

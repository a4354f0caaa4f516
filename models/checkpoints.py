"""Checkpoint files: our own safetensors format for the tiny profile, the one fit check every weight
loader runs, and the one dtype cast that keeps a model's float32 modules."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn


class CheckpointError(Exception):
    """A weight file is missing, unreadable, or does not fit the model."""


def save_modules(path: str | Path, modules: dict[str, nn.Module], metadata: dict | None = None,
                 dtype: torch.dtype | None = None) -> None:
    """Save several modules in one safetensors file, keys prefixed by their name ("dit.", "codec.")."""
    tensors = {}
    for prefix, module in modules.items():
        for key, value in module.state_dict().items():
            value = value.detach().cpu()
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            tensors[f"{prefix}.{key}"] = value.contiguous()
    meta = {"format": "talking-avatar/1", **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def read_metadata(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {k: (json.loads(v) if k != "format" else v) for k, v in meta.items()}


def read_tensors(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing weight file {path} ({what})")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for a corrupt file
        raise CheckpointError(f"cannot read {path} ({what}): {exc}") from exc


def check_fit(own: dict[str, torch.Size], state: dict[str, torch.Size], source: str) -> None:
    """Raise CheckpointError listing missing, unexpected and misshapen keys (shapes as sizes)."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k]) != tuple(state[k]))
    if not (missing or unexpected or wrong):
        return
    lines = [f"{source} does not fit the model:"]
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
            lines.append(f"  {label} keys: {shown}")
    for k in wrong[:12]:
        lines.append(f"  shape of {k}: file {tuple(state[k])}, model {tuple(own[k])}")
    raise CheckpointError("\n".join(lines))


def load_exact(module: nn.Module, state: dict[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """Load a state dict that must match the module key for key and shape for shape (`assign`: take the
    tensors as they are, e.g. into a model built on the meta device)."""
    check_fit({k: v.shape for k, v in module.state_dict().items()}, {k: v.shape for k, v in state.items()}, source)
    module.load_state_dict(state, strict=True, assign=assign)


def kept_dtype(module: nn.Module, name: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype parameter `name` of `module` takes under `dtype`: float32 for the modules the model
    keeps in float32 (diffusers' `_keep_in_fp32_modules`; Wan: norms, time embedding, modulation)."""
    keep = set(getattr(module, "_keep_in_fp32_modules", None) or ())
    return torch.float32 if keep.intersection(name.split(".")) else dtype


def cast_keeping_fp32(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast the parameters to `dtype`, except those `kept_dtype` keeps in float32; buffers stay as they are."""
    for name, param in module.named_parameters():
        param.data = param.data.to(kept_dtype(module, name, dtype))
    return module


def split_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}

"""What the baselines (ESD, UCE, SLD) share: configs, concept prompts, and how an edit is written and loaded.

A baseline's output folder holds exactly one of:

- ``pytorch_lora_weights.safetensors``: a LoRA in diffusers format, when every changed weight
  belongs to a linear layer (UCE; ESD on attention layers). The weight change ``dW`` of each layer is
  factorised exactly by SVD (``dW = B A``, rank = the rank of ``dW``), so the LoRA *is* the edit, loads
  with ``pipe.load_lora_weights(folder)`` and combines with other LoRAs through ``set_adapters``.
- ``weight_delta.safetensors``: ``new - base`` for every changed denoiser parameter (ESD on
  convolutions and the whole UNet, which a LoRA cannot express), keyed ``unet.<parameter name>``.
- ``sld_config.json``: inference-time settings (SLD), no weights.

plus ``README.md`` (model card), ``manifest.json`` and the method's settings. ``load_pipeline(model,
lora=[folder])`` applies any of them (the methods package registers the two non-LoRA kinds in
:mod:`t2i_unlearn.artifacts`), so ``eval`` and the report treat every method the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.io import OutputClaim, replace_dir, temp_dir_beside

logger = logging.getLogger(__name__)

LORA_FILE = "pytorch_lora_weights.safetensors"
DELTA_FILE = "weight_delta.safetensors"
SLD_FILE = "sld_config.json"
DELTA_FORMAT = "t2i_unlearn.weight_delta.v1"


# ---------------------------------------------------------------------------------------------
# Concept prompts
# ---------------------------------------------------------------------------------------------


def concept_prompt_pairs(concept: Any) -> list[tuple[str, str]]:
    """Distinct ``(unsafe, safe)`` prompt pairs of a concept spec and all its sub-concepts, in spec order.

    ``concept`` is a :class:`~t2i_unlearn.concepts.ConceptSpec` or anything :func:`load_concept` accepts.
    """
    from t2i_unlearn.concepts import load_concept

    spec = concept if hasattr(concept, "leaves") else load_concept(concept)
    pairs: list[tuple[str, str]] = []
    for leaf in spec.leaves().values():
        for p in leaf.prompts:
            if (p.unsafe, p.safe) not in pairs:
                pairs.append((p.unsafe, p.safe))
    if not pairs:
        raise UserError(f"concept {spec.name} has no prompts")
    return pairs


def dedupe(items: Sequence[str]) -> list[str]:
    """``items`` without repeats, first occurrence kept."""
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------------
# Writing an edit
# ---------------------------------------------------------------------------------------------


def prepare_out(out: str | Path, overwrite: bool, method: str, request: dict[str, Any] | None = None) -> OutputClaim:
    """Claim ``out`` under the output rule (:func:`~t2i_unlearn.utils.io.claim_output`).

    ``request`` (model, concept, settings) identifies the result: a folder holding the same result is
    ``done`` (reuse it); another result or a foreign folder needs ``overwrite``.
    """
    from t2i_unlearn.utils.io import OTHER, claim_output, manifest_recogniser

    noun = {"esd": "an ESD result", "sld": "an SLD result"}.get(method, f"a {method.upper()} result")
    same = manifest_recogniser(f"{method}_result", request or {}, noun)

    def recognise(path: Path) -> tuple[str, str]:
        status, why = same(path)
        if status == OTHER and any((path / f).exists() for f in (LORA_FILE, DELTA_FILE, SLD_FILE, "manifest.json")):
            return OTHER, "already holds a result" if "other settings" not in why else why
        return status, why

    return claim_output(out, noun, recognise, overwrite)


def weight_deltas(network: torch.nn.Module, base: dict[str, torch.Tensor], atol: float = 0.0) -> dict[str, torch.Tensor]:
    """``new - base`` (float32, CPU) for every parameter of ``network`` named in ``base`` that changed by more than ``atol``."""
    params = dict(network.named_parameters())
    out = {}
    for name, old in base.items():
        new = params[name].detach().to("cpu", torch.float32)
        delta = new - old.to("cpu", torch.float32)
        if delta.abs().max().item() > atol:
            out[name] = delta.contiguous()
    return out


def _linear_modules(network: torch.nn.Module, names: Sequence[str]) -> set[str] | None:
    """Modules owning ``names`` if every one is the weight of an ``nn.Linear`` (a LoRA holds no bias change); else None."""
    modules = dict(network.named_modules())
    owners = set()
    for name in names:
        owner, _, leaf = name.rpartition(".")
        if leaf != "weight" or not isinstance(modules.get(owner), torch.nn.Linear):
            return None
        owners.add(owner)
    return owners


def lora_factors(delta: torch.Tensor, max_rank: int | None = None, rtol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(A [r, in], B [out, r], relative error)`` with ``B @ A`` the best rank-``r`` approximation of ``delta``.

    ``r`` is the number of singular values above ``rtol`` times the largest (the numerical rank),
    capped at ``max_rank``; the error is ``||delta - B A||_F / ||delta||_F`` (0 when exact).
    """
    d = delta.double()
    u, s, vh = torch.linalg.svd(d, full_matrices=False)
    r = max(1, int((s > rtol * s.max()).sum().item())) if s.numel() and s.max() > 0 else 1
    if max_rank is not None:
        r = min(r, max_rank)
    root = s[:r].sqrt()
    b = u[:, :r] * root
    a = root[:, None] * vh[:r]
    norm = d.norm().item()
    err = (d - b @ a).norm().item() / norm if norm > 0 else 0.0
    return a.float().contiguous(), b.float().contiguous(), err


def save_lora_edit(out_dir: Path, network: torch.nn.Module, deltas: dict[str, torch.Tensor], family: str, max_rank: int | None = None) -> dict[str, Any]:
    """Write ``deltas`` of linear layers as an exact (SVD) LoRA in diffusers format into ``out_dir``.

    ``network`` is only read (a copy carries the adapter). peft's ``lora_bias`` is not used: it is one switch for
    every targeted layer and cannot be merged into layers without a bias, so bias changes go to a weight delta instead.
    Returns ``{"kind": "lora", "modules", "max_rank", "max_rel_error"}``.
    """
    import copy

    from peft import LoraConfig

    from t2i_unlearn.adapters import save_lora

    owners = sorted(_linear_modules(network, list(deltas)) or [])
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    ranks: dict[str, int] = {}
    worst = 0.0
    for name in owners:
        a, b, err = lora_factors(deltas[f"{name}.weight"], max_rank)
        factors[name] = (a, b)
        ranks[name] = a.shape[0]
        worst = max(worst, err)
    r = max(ranks.values())
    pattern = {k: v for k, v in ranks.items() if v != r}
    config = LoraConfig(
        r=r,
        lora_alpha=r,
        rank_pattern=pattern,
        alpha_pattern=dict(pattern),  # alpha = rank everywhere: scale 1, the LoRA adds exactly B A
        target_modules=owners,
        init_lora_weights=False,
        lora_dropout=0.0,
    )
    carrier = copy.deepcopy(network).cpu().float()
    carrier.add_adapter(config)
    carrier_modules = dict(carrier.named_modules())
    with torch.no_grad():
        for name, (a, b) in factors.items():
            carrier_modules[name].lora_A["default"].weight.copy_(a)
            carrier_modules[name].lora_B["default"].weight.copy_(b)
    save_lora(out_dir, carrier, family)
    return {"kind": "lora", "file": LORA_FILE, "modules": len(owners), "max_rank": r, "max_rel_error": worst}


def save_delta_edit(out_dir: Path, deltas: dict[str, torch.Tensor], component: str = "unet") -> dict[str, Any]:
    """Write ``deltas`` as ``weight_delta.safetensors`` (keys ``<component>.<parameter>``); returns a summary."""
    from t2i_unlearn.utils.io import atomic_save_safetensors

    atomic_save_safetensors(out_dir / DELTA_FILE, {f"{component}.{k}": v for k, v in deltas.items()}, metadata={"format": DELTA_FORMAT})
    return {"kind": "weight_delta", "file": DELTA_FILE, "parameters": len(deltas), "elements": int(sum(v.numel() for v in deltas.values()))}


def save_weight_edit(
    out_dir: Path, network: torch.nn.Module, base: dict[str, torch.Tensor], family: str, prefer_lora: bool = True, max_rank: int | None = None
) -> dict[str, Any]:
    """Write how ``network`` differs from ``base``: a LoRA if every change is in a linear layer (and ``prefer_lora``), else a weight delta."""
    deltas = weight_deltas(network, base)
    if not deltas:
        raise UserError("the edit changed no weight (learning rate or scales too small?); nothing to save")
    if prefer_lora and _linear_modules(network, list(deltas)) is not None:
        return save_lora_edit(out_dir, network, deltas, family, max_rank)
    return save_delta_edit(out_dir, deltas)


def write_card(out_dir: Path, title: str, method_line: str, base_model: str, kind: str, settings: dict[str, Any], extra: str = "") -> Path:
    """A README.md model card: what the folder is, how to load it (ours and plain diffusers), and its settings."""
    from t2i_unlearn.adapters import write_card_with_settings

    name = Path(out_dir).name
    if kind == "lora":
        how = [
            "```python",
            "from diffusers import DiffusionPipeline",
            f'pipe = DiffusionPipeline.from_pretrained("{base_model}")',
            f'pipe.load_lora_weights("{name}")   # the edit, factorised exactly (SVD) as a LoRA',
            "```",
        ]
    elif kind == "weight_delta":
        how = [
            "```python",
            "from diffusers import DiffusionPipeline",
            "from safetensors.torch import load_file",
            f'pipe = DiffusionPipeline.from_pretrained("{base_model}")',
            f'delta = load_file("{name}/{DELTA_FILE}")   # new - base, keys "unet.<parameter>"',
            "params = dict(pipe.unet.named_parameters())",
            'for key, d in delta.items(): params[key.split(".", 1)[1]].data += d',
            "```",
        ]
    else:
        how = [
            "```python",
            "from diffusers import StableDiffusionPipelineSafe",
            "import json",
            f'pipe = StableDiffusionPipelineSafe.from_pretrained("{base_model}", safety_checker=None, requires_safety_checker=False)',
            f'cfg = json.load(open("{name}/{SLD_FILE}"))',
            'pipe.safety_concept = cfg["safety_concept"]',
            'image = pipe(prompt, **cfg["sld"]).images[0]',
            "```",
        ]
    head = [
        "---",
        "library_name: diffusers",
        f"tags: [text-to-image, unlearning, {kind.replace('_', '-')}, t2i-unlearn]",
        "---",
        f"# {title}",
        "",
        method_line,
        "",
        f"With t2i_unlearn: `t2i-unlearn generate --model {base_model} --lora {name} ...` (or `eval --lora {name}`).",
        "",
        *how,
        "",
    ]
    return write_card_with_settings(out_dir, head, settings, extra)


def finish_folder(out: Path, tmp: Path) -> Path:
    """Move the finished temporary folder ``tmp`` to ``out`` (replacing an old result)."""
    return replace_dir(tmp, out)


def temp_folder(out: Path) -> Path:
    """A fresh temporary folder beside ``out`` (renamed to ``out`` by :func:`finish_folder` when complete)."""
    return temp_dir_beside(out)


# ---------------------------------------------------------------------------------------------
# Loading: what load_pipeline does with an output folder that is not a LoRA
# ---------------------------------------------------------------------------------------------


def apply_weight_delta(pipe: Any, path: str | Path, weight: float = 1.0) -> Any:
    """Add ``weight`` times a weight delta to the pipeline's denoiser (in place); returns ``pipe``."""
    from safetensors import safe_open

    from t2i_unlearn.adapters import denoiser

    p = Path(path)
    file = p / DELTA_FILE if p.is_dir() else p
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise UserError(f"weight delta {file} is unreadable ({type(exc).__name__})") from exc
    if meta.get("format") != DELTA_FORMAT:
        raise UserError(f"{file} is not a t2i_unlearn weight delta (format {meta.get('format')!r})")
    params = dict(denoiser(pipe).named_parameters())
    with torch.no_grad():
        for key, delta in tensors.items():
            component, _, name = key.partition(".")
            if component not in ("unet", "transformer") or name not in params or params[name].shape != delta.shape:
                raise UserError(f"weight delta {file} does not fit this model (parameter {key})")
            params[name].add_(delta.to(params[name].device, params[name].dtype), alpha=float(weight))
    logger.info("applied weight delta %s (%d parameters, weight %s)", file, len(tensors), weight)
    return pipe


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`UserError` if unreadable."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({type(exc).__name__})") from exc
    if not isinstance(value, dict):
        raise UserError(f"{path} must hold a JSON object")
    return value

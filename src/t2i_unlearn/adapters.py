"""LoRA adapters: attach to a pipeline's denoiser, save in diffusers format, fuse and export.

What we write loads in plain diffusers::

    pipe.load_lora_weights("out_dir")                      # pytorch_lora_weights.safetensors
    pipe.load_lora_weights("blood", adapter_name="blood")  # several sub-concept LoRAs ...
    pipe.set_adapters(["blood", "gun"], [1.0, 1.0])        # ... combined

``export_pipeline`` fuses one or several LoRAs into the base weights and writes a full pipeline
directory, plus a single-file checkpoint in the family's original layout (SD 1.x, SDXL, SD3; see
:mod:`t2i_unlearn.single_file`) that A1111 and ComfyUI load as a model.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from t2i_unlearn.errors import UserError

logger = logging.getLogger(__name__)

LORA_FILE = "pytorch_lora_weights.safetensors"

# The authors' targets: UNet self-attention only (SD 1.x/2.x and SDXL) ...
SELF_ATTENTION_TARGETS = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"]
# ... and, in their SD3 script, every attention projection of the MM-DiT (image and text streams).
SD3_ATTENTION_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


def default_targets(family: str) -> list[str]:
    """LoRA target module names for a model family (``sd``, ``sdxl``, ``sd3``)."""
    return list(SD3_ATTENTION_TARGETS if family == "sd3" else SELF_ATTENTION_TARGETS)


def denoiser(pipe: Any) -> torch.nn.Module:
    """The pipeline's denoising network: ``unet`` (SD 1.x/2.x, SDXL) or ``transformer`` (SD3)."""
    net = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if net is None:
        raise UserError(f"{type(pipe).__name__} has neither a unet nor a transformer")
    return net


def add_lora(network: torch.nn.Module, rank: int, alpha: float, targets: Sequence[str], init: str | bool = "gaussian", seed: int = 0) -> None:
    """Add a trainable LoRA adapter named ``default`` to ``network`` (its base weights stay frozen).

    ``init`` is peft's ``init_lora_weights`` ("gaussian": A ~ N(0, 1/rank), B = 0, so the adapter
    starts as the identity). The initial A draws come from ``seed``.
    """
    from peft import LoraConfig

    network.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=init, target_modules=list(targets), lora_dropout=0.0)
    devices_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        network.add_adapter(config)
    except ValueError as exc:
        raise UserError(f"cannot add LoRA on {list(targets)}: {str(exc).splitlines()[0]}") from exc
    finally:
        torch.random.set_rng_state(devices_state)
    n = sum(p.numel() for p in network.parameters() if p.requires_grad)
    logger.info("LoRA rank %d alpha %s on %s: %d trainable parameters", rank, alpha, list(targets), n)


def lora_state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights in peft naming (``...to_q.lora_A.weight``), detached CPU float32 copies."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in get_peft_model_state_dict(network).items()}


def load_lora_state(network: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load weights saved by :func:`lora_state` into ``network``'s ``default`` adapter."""
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(network, state, adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise UserError(f"checkpoint does not match the model's LoRA ({len(unexpected)} unexpected keys, e.g. {unexpected[0]})")


def canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys and no spaces, in place; tensors untouched.

    safetensors writes the ``__metadata__`` entries in an order that changes from process to process,
    so the same weights would give different bytes (and hashes) in two runs. Data offsets in the header
    are relative to the end of the header, so they stay valid; the header is padded to 8 bytes with
    spaces, as the format allows.
    """
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + size :])


def save_lora(out_dir: str | Path, network: torch.nn.Module, family: str) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` in diffusers format into ``out_dir``, atomically.

    The adapter's LoRA config (rank, alpha, targets) is stored in the file's metadata, so diffusers
    restores the same scaling when it loads the file.
    """
    from diffusers import StableDiffusion3Pipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    from t2i_unlearn.utils.io import publish

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = lora_state(network)
    meta = network.peft_config["default"].to_dict()
    # peft keeps target_modules as a set, whose order follows PYTHONHASHSEED: sort it for stable bytes
    meta = {k: sorted(v) if isinstance(v, set) else v for k, v in meta.items()}
    tmp = Path(tempfile.mkdtemp(prefix=".lora-", dir=out_dir))
    try:
        if family == "sd3":
            StableDiffusion3Pipeline.save_lora_weights(tmp, transformer_lora_layers=state, transformer_lora_adapter_metadata=meta)
        elif family == "sdxl":
            StableDiffusionXLPipeline.save_lora_weights(tmp, unet_lora_layers=state, unet_lora_adapter_metadata=meta)
        else:
            StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=state, unet_lora_adapter_metadata=meta)
        canonical_header(tmp / LORA_FILE)
        publish(tmp / LORA_FILE, out_dir / LORA_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / LORA_FILE


# ---------------------------------------------------------------------------------------------
# Export: fuse LoRAs into the base weights, write a pipeline directory and a single-file checkpoint
# ---------------------------------------------------------------------------------------------


def export_pipeline(
    model: str,
    loras: Sequence[str],
    out: str | Path,
    weights: Sequence[float] | None = None,
    single_file: bool = True,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Fuse ``loras`` (with ``weights``, default 1 each) into ``model`` and write ``out/pipeline`` (+ ``out/model.safetensors``).

    Returns the written paths: ``{"pipeline": ..., "single_file": ...}``. The single file is written
    for SD 1.x, SDXL and SD3 (see :mod:`t2i_unlearn.single_file`); for a model whose layout we
    do not write (SD 2.x, the SDXL refiner) a warning says so and only the pipeline folder is written. Everything is
    written under a temporary name and renamed, so an interrupted export leaves nothing that looks complete.
    ``out`` follows the output rule of :func:`~t2i_unlearn.utils.io.claim_output` (an export of the same
    inputs is redone and replaced; anything else non-empty is refused unless ``overwrite``).
    """
    from t2i_unlearn.models import load_pipeline, pipeline_family
    from t2i_unlearn.single_file import single_file_problem, single_file_state, write_single_file
    from t2i_unlearn.utils.io import atomic_write_json, claim_output, make_manifest, manifest_recogniser
    from t2i_unlearn.utils.validate import check_model_arg, check_paths_exist

    if not loras:
        raise UserError("export needs at least one --lora")
    check_model_arg(model)
    check_paths_exist(list(loras), "LoRA")
    if weights and len(weights) != len(loras):
        raise UserError(f"{len(loras)} LoRAs but {len(weights)} LoRA weights")
    for path in loras:
        if (Path(path) / "sld_config.json").exists():
            raise UserError(f"{path} is an SLD result: settings applied while sampling, no weights to fuse; export takes LoRAs and ESD deltas")
    request = {
        "model": model,
        "lora": [str(Path(p).expanduser().resolve()) for p in loras],
        "weights": list(weights) if weights else None,
        "single_file": single_file,
    }
    claim = claim_output(out, "an export", manifest_recogniser("export", request, "an export", same="partial"), overwrite)
    pipe = load_pipeline(model, lora=list(loras), lora_weights=weights)
    family = pipeline_family(pipe)
    names = [n for names in pipe.get_list_adapters().values() for n in names]
    pipe.fuse_lora(lora_scale=1.0, adapter_names=sorted(set(names)))
    pipe.unload_lora_weights()
    out = claim.path
    written: dict[str, Path] = {}
    with claim.staged() as tmp:
        pipe.save_pretrained(tmp / "pipeline", safe_serialization=True)
        written["pipeline"] = out / "pipeline"
        if single_file:
            problem = single_file_problem(pipe, family)
            if problem:
                logger.warning("no single-file checkpoint (%s); wrote the pipeline directory only", problem)
            else:
                write_single_file(single_file_state(pipe, family), tmp / "model.safetensors")
                written["single_file"] = out / "model.safetensors"
        atomic_write_json(tmp / "manifest.json", make_manifest("t2i-unlearn export", request, artifact="export", request=request))
    return written


def write_model_card(out_dir: str | Path, title: str, base_model: str, family: str, settings: dict[str, Any], data: dict[str, Any], extra: str = "") -> Path:
    """A README.md model card: how to load the LoRA, the training settings and the data it came from."""
    head = [
        "---",
        "library_name: diffusers",
        "tags: [lora, text-to-image, unlearning, duo, t2i-unlearn]",
        "---",
        f"# {title}",
        "",
        f"LoRA trained with t2i_unlearn (Direct Unlearning Optimization) on `{base_model}` ({family}).",
        "",
        "```python",
        "from diffusers import DiffusionPipeline",
        f'pipe = DiffusionPipeline.from_pretrained("{base_model}")',
        f'pipe.load_lora_weights("{out_dir}")',
        "```",
        "",
        "## Data",
        "",
        *[f"- {k}: `{v}`" for k, v in data.items()],
        "",
    ]
    return write_card_with_settings(out_dir, head, settings, extra)


def write_card_with_settings(out_dir: str | Path, head: Sequence[str], settings: dict[str, Any], extra: str = "") -> Path:
    """Write ``out_dir/README.md`` atomically: the ``head`` lines, a ``## Settings`` table of ``settings``, then ``extra``."""
    from t2i_unlearn.utils.io import atomic_write_text

    lines = [
        *head,
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | `{v}` |" for k, v in settings.items()],
        "",
    ]
    if extra:
        lines += [extra, ""]
    return atomic_write_text(Path(out_dir) / "README.md", "\n".join(lines))

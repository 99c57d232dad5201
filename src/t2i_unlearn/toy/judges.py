"""The toy world's judges: one small CNN with a classification head per attribute.

It plays three roles, like NudeNet/Q16, CLIP and Inception/LPIPS do for real models:
- concept detectors: probability that an image shows ``texture=striped``, ``mark=crossed`` ...;
- attribute classifier: which shape and colour was drawn (the CLIP-score analogue);
- feature network: pooled features for a Fréchet distance, and unit-normalised multi-layer features
  for an LPIPS-like perceptual distance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from t2i_unlearn.errors import UserError
from t2i_unlearn.toy.render import ATTRIBUTES, attribute_values
from t2i_unlearn.utils.io import atomic_save_safetensors, atomic_write_json

WEIGHTS_NAME = "judge.safetensors"
CONFIG_NAME = "judge_config.json"


class ToyJudge(nn.Module):
    """CNN over 32x32 RGB images in [-1, 1] with one softmax head per toy attribute."""

    def __init__(self, heads: dict[str, list[str]], width: int = 32):
        super().__init__()
        self.heads_spec = {k: list(v) for k, v in heads.items()}
        w = width
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.GELU()),
                nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.GELU()),
                nn.Sequential(nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GELU(), nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.GELU()),
                nn.Sequential(nn.Conv2d(4 * w, 4 * w, 3, stride=2, padding=1), nn.GELU()),
            ]
        )
        self.feature_dim = 4 * w
        self.heads = nn.ModuleDict({k: nn.Linear(self.feature_dim, len(v)) for k, v in self.heads_spec.items()})

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each block (used for the perceptual distance)."""
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.layers(x)[-1].mean(dim=(2, 3))
        return {k: head(feats) for k, head in self.heads.items()}

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled last-layer features ``[B, feature_dim]`` (used for the Fréchet distance)."""
        return self.layers(x)[-1].mean(dim=(2, 3))


def default_heads() -> dict[str, list[str]]:
    """One head per toy attribute, classes in ``world.yaml`` order."""
    return {attr: attribute_values(attr) for attr in ATTRIBUTES}


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` or float ``[B, H, W, 3]`` in [0, 1] -> float ``[B, 3, H, W]`` in [-1, 1]."""
    x = torch.as_tensor(images)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x.permute(0, 3, 1, 2) * 2.0 - 1.0


def save_judge(judge: ToyJudge, directory: str | Path) -> None:
    """Write ``judge.safetensors`` and ``judge_config.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in judge.state_dict().items()}
    atomic_save_safetensors(directory / WEIGHTS_NAME, state)
    width = judge.blocks[0][0].out_channels
    atomic_write_json(directory / CONFIG_NAME, {"heads": judge.heads_spec, "width": width})


def load_judge(directory: str | Path) -> ToyJudge:
    """Load a judge saved by :func:`save_judge`, in eval mode."""
    directory = Path(directory)
    try:
        config = json.loads((directory / CONFIG_NAME).read_text())
        judge = ToyJudge(config["heads"], width=config["width"])
        judge.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise UserError(f"toy judge at {directory} cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    return judge.eval()


@torch.no_grad()
def predict(judge: ToyJudge, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Class probabilities per head: ``{attribute: float array [B, n_values]}``."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in judge.heads_spec}
    for i in range(0, len(images), batch_size):
        logits = judge(to_input(images[i : i + batch_size]))
        for k, v in logits.items():
            out[k].append(torch.softmax(v, dim=-1).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def labels_from_probs(judge: ToyJudge, probs: dict[str, np.ndarray]) -> list[dict[str, str]]:
    """Argmax label per head for each image."""
    n = len(next(iter(probs.values())))
    return [{k: judge.heads_spec[k][int(np.argmax(p[i]))] for k, p in probs.items()} for i in range(n)]


@torch.no_grad()
def perceptual_distance(judge: ToyJudge, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """LPIPS-like distance per image pair, in [0, 2]; 0 for identical images.

    Per block, channel vectors are unit-normalised and compared by ``1 - cosine``; the result is
    averaged over positions and then over blocks (LPIPS's recipe without its learned channel weights).
    """
    if len(a) != len(b):
        raise UserError(f"perceptual distance needs equal numbers of images, got {len(a)} and {len(b)}")
    la, lb = judge.layers(to_input(a)), judge.layers(to_input(b))
    per_layer = []
    for fa, fb in zip(la, lb, strict=True):
        fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-8)
        fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-8)
        per_layer.append((1.0 - (fa * fb).sum(dim=1)).mean(dim=(1, 2)))
    return torch.stack(per_layer).mean(dim=0).numpy()


@torch.no_grad()
def features(judge: ToyJudge, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Pooled features for a Fréchet distance, ``float64 [B, feature_dim]``."""
    return np.concatenate([judge.pooled(to_input(images[i : i + batch_size])).double().numpy() for i in range(0, len(images), batch_size)])


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula)."""
    from scipy import linalg

    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    cov_a, cov_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    covmean = np.real(covmean)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2.0 * covmean))

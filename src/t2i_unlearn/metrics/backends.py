"""The networks behind the metrics, chosen by name in a suite's ``metrics`` block.

=============  =====================================  ==========================================
metric         real models                            toy world (``toy``)
=============  =====================================  ==========================================
perceptual     ``lpips`` (AlexNet; optional extra)    the toy judge's LPIPS-like feature distance
fid            ``inception`` (torchmetrics or         Fréchet distance of the toy judge's pooled
               clean-fid; optional extras)            features
clip_score     a CLIP model directory or hub id       attribute accuracy: the toy judge reads the
                                                      shape and colour the prompt asked for
=============  =====================================  ==========================================

The optional packages pull torchvision, so they are imported only when a suite asks for them and a
missing one is a one-line :class:`UserError` saying what to install.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from t2i_unlearn.errors import UserError
from t2i_unlearn.metrics import frechet_distance
from t2i_unlearn.utils.io import sha256_file

logger = logging.getLogger(__name__)


class Perceptual(Protocol):
    """Per-pair perceptual distance between two equally long ``uint8 [N, H, W, 3]`` image batches."""

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray: ...

    def info(self) -> dict[str, Any]: ...


class Fid(Protocol):
    """FID between two image sets."""

    def fid(self, images: np.ndarray, reference: np.ndarray) -> float: ...

    def info(self) -> dict[str, Any]: ...


class PromptAlignment(Protocol):
    """Per-image agreement between an image and what its prompt asked for (CLIP score or toy accuracy)."""

    def score(self, images: np.ndarray, prompts: list[str], labels: list[dict[str, Any]]) -> np.ndarray: ...

    def info(self) -> dict[str, Any]: ...


def _check_pairs(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise UserError(f"cannot compare images of shape {list(a.shape[1:])} with {list(b.shape[1:])}: base and unlearned images must have the same size")


class ToyBackend:
    """The toy world's judge network as perceptual distance, FID features and attribute reader."""

    def __init__(self, model: str | None):
        from t2i_unlearn.judges.toy import find_toy_judges
        from t2i_unlearn.toy.judges import load_judge
        from t2i_unlearn.toy.render import world_spec

        self.judges_dir = find_toy_judges(model)
        self.judge = load_judge(self.judges_dir)
        self.size = int(world_spec()["image_size"])

    def _check(self, images: np.ndarray) -> None:
        if images.ndim != 4 or images.shape[1:3] != (self.size, self.size):
            raise UserError(f"the toy metrics read {self.size}x{self.size} images, got {images.shape[1]}x{images.shape[2]}")

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """LPIPS-like distance per pair (see :func:`t2i_unlearn.toy.judges.perceptual_distance`)."""
        from t2i_unlearn.toy.judges import perceptual_distance

        _check_pairs(a, b)
        self._check(a)
        return np.concatenate([perceptual_distance(self.judge, a[i : i + 256], b[i : i + 256]) for i in range(0, len(a), 256)]).astype(np.float64)

    def fid(self, images: np.ndarray, reference: np.ndarray) -> float:
        """Fréchet distance of the judge's pooled features."""
        from t2i_unlearn.toy.judges import features

        self._check(images)
        self._check(reference)
        return frechet_distance(features(self.judge, images), features(self.judge, reference))

    def features(self, images: np.ndarray) -> np.ndarray:
        """Pooled judge features ``[N, D]`` (the image encoder of Dark Miner's verification on the toy world)."""
        from t2i_unlearn.toy.judges import features

        self._check(images)
        return features(self.judge, images)

    def score(self, images: np.ndarray, prompts: list[str], labels: list[dict[str, Any]]) -> np.ndarray:
        """1.0 per image whose shape and colour (those the prompt file labels) the judge reads as asked, else 0.0."""
        from t2i_unlearn.toy.judges import labels_from_probs, predict

        self._check(images)
        heads = [h for h in ("shape", "colour") if labels and all(h in lab for lab in labels)]
        if not heads:
            raise UserError("toy attribute accuracy needs prompt files with 'shape' and/or 'colour' columns")
        pred = labels_from_probs(self.judge, predict(self.judge, images))
        return np.array([float(all(p[h] == lab[h] for h in heads)) for p, lab in zip(pred, labels, strict=True)])

    def info(self) -> dict[str, Any]:
        """Which toy judge network."""
        return {"backend": "toy", "network": str(self.judges_dir), "weights_sha256": sha256_file(self.judges_dir / "judge.safetensors")}


class LpipsPerceptual:
    """LPIPS (Zhang et al. 2018) from the ``lpips`` package; AlexNet by default, as in the DUO paper."""

    def __init__(self, net: str = "alex", device: str = "cpu"):
        try:
            import lpips
        except ImportError as exc:
            raise UserError("perceptual: lpips needs the optional package lpips (pip install 't2i-unlearn[lpips]'; it pulls torchvision)") from exc
        self.net, self.device = net, device
        self.model = lpips.LPIPS(net=net, verbose=False).to(device).eval()
        self.linear_weights = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        self.version = getattr(lpips, "__version__", "unknown")

    @torch.no_grad()
    def distance(self, a: np.ndarray, b: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """LPIPS per pair on images scaled to [-1, 1]."""
        _check_pairs(a, b)
        out = []
        for i in range(0, len(a), batch_size):
            x = torch.from_numpy(a[i : i + batch_size]).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(self.device)
            y = torch.from_numpy(b[i : i + batch_size]).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(self.device)
            out.append(self.model(x, y).flatten().double().cpu().numpy())
        return np.concatenate(out)

    def info(self) -> dict[str, Any]:
        """Package version, network and linear-layer weights hash."""
        sha = sha256_file(self.linear_weights) if self.linear_weights.exists() else None
        return {"backend": "lpips", "version": self.version, "net": self.net, "weights_sha256": sha}


class InceptionFid:
    """FID with Inception-v3 features: torchmetrics (with torch-fidelity) if installed, else clean-fid."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: F401

            self.library = "torchmetrics"
        except ImportError:
            try:
                import cleanfid  # noqa: F401

                self.library = "clean-fid"
            except ImportError as exc:
                raise UserError("fid: inception needs torchmetrics[image] or clean-fid (optional; both pull torchvision)") from exc

    def fid(self, images: np.ndarray, reference: np.ndarray) -> float:
        """FID of ``images`` against ``reference`` (both ``uint8 [N, H, W, 3]``)."""
        if self.library == "torchmetrics":
            from torchmetrics.image.fid import FrechetInceptionDistance

            metric = FrechetInceptionDistance(feature=2048).to(self.device)
            for arr, real in ((reference, True), (images, False)):
                for i in range(0, len(arr), 64):
                    metric.update(torch.from_numpy(arr[i : i + 64]).permute(0, 3, 1, 2).to(self.device), real=real)
            return float(metric.compute())
        import tempfile

        from cleanfid import fid
        from PIL import Image

        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            for folder, arr in ((a, images), (b, reference)):
                for i, im in enumerate(arr):
                    Image.fromarray(im).save(Path(folder) / f"{i:06d}.png")
            return float(fid.compute_fid(a, b, mode="clean", device=torch.device(self.device), num_workers=0))

    def info(self) -> dict[str, Any]:
        """Which FID implementation."""
        from importlib import metadata

        name = "torchmetrics" if self.library == "torchmetrics" else "clean-fid"
        return {"backend": "inception", "library": name, "version": metadata.version(name)}


class ClipAlignment:
    """CLIP score of each image against its prompt with a configurable CLIP model."""

    def __init__(self, source: str, device: str = "cpu"):
        from t2i_unlearn.metrics.clip import ClipEncoder

        self.encoder = ClipEncoder(source, device=device)

    def score(self, images: np.ndarray, prompts: list[str], labels: list[dict[str, Any]]) -> np.ndarray:
        """``100 * max(cos, 0)`` per image."""
        from t2i_unlearn.metrics.clip import clip_score

        return clip_score(self.encoder, images, prompts)

    def info(self) -> dict[str, Any]:
        """CLIP model name and weights hash (scores of different CLIP models are not comparable)."""
        return {"backend": "clip", **self.encoder.info()}


class ImageFeatures(Protocol):
    """Image embeddings ``[N, D]`` of ``uint8 [N, H, W, 3]`` images (CLIP vision on real models, the toy judge's features on the toy)."""

    def features(self, images: np.ndarray) -> np.ndarray: ...

    def info(self) -> dict[str, Any]: ...


class ClipImageFeatures:
    """Unit-norm CLIP image embeddings of a configurable CLIP model."""

    def __init__(self, source: str, device: str = "cpu"):
        from t2i_unlearn.metrics.clip import ClipEncoder

        self.encoder = ClipEncoder(source, device=device)

    def features(self, images: np.ndarray) -> np.ndarray:
        """``[N, D]`` float32 embeddings."""
        return self.encoder.image_embeddings(images).numpy()

    def info(self) -> dict[str, Any]:
        """CLIP model name and weights hash."""
        return {"backend": "clip", **self.encoder.info()}


def make_image_features(kind: str, model: str | None, device: str = "cpu") -> ImageFeatures:
    """``toy`` (the toy world's feature network) or a CLIP model directory / hub id."""
    if kind == "toy":
        return ToyBackend(model)
    return ClipImageFeatures(kind, device=device)


def make_perceptual(kind: str, model: str | None, device: str = "cpu", net: str = "alex") -> Perceptual:
    """``toy`` or ``lpips``."""
    if kind == "toy":
        return ToyBackend(model)
    if kind == "lpips":
        return LpipsPerceptual(net=net, device=device)
    raise UserError(f"unknown perceptual backend {kind!r}; use lpips or toy")


def make_fid(kind: str, model: str | None, device: str = "cpu") -> Fid:
    """``toy`` or ``inception``."""
    if kind == "toy":
        return ToyBackend(model)
    if kind == "inception":
        return InceptionFid(device=device)
    raise UserError(f"unknown fid backend {kind!r}; use inception or toy")


def make_alignment(kind: str, model: str | None, device: str = "cpu") -> PromptAlignment:
    """``toy`` (attribute accuracy) or a CLIP model directory / hub id."""
    if kind == "toy":
        return ToyBackend(model)
    return ClipAlignment(kind, device=device)

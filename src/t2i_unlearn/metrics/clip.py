"""A CLIP model loaded from a path (or, explicitly, a hub id), its image/text embeddings, and the CLIP score.

Images are preprocessed here (bicubic resize of the short side, centre crop, CLIP mean/std), so no
image-processor files or torchvision are needed. CLIP scores of different CLIP models are not
comparable (ViT-L/14 vs B/32): results record the model's name and weights hash.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2i_unlearn.errors import UserError

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def weights_fingerprint(source: str | Path) -> str:
    """SHA-256 over the weight and config files of a model directory (or of a file); ``hub:<id>`` for a hub id."""
    from t2i_unlearn.utils.io import hash_files, sha256_file

    path = Path(source).expanduser()
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        files = hash_files(path, ("**/*.safetensors", "**/*.bin", "**/*.json", "**/*.txt"))
        return hashlib.sha256("\n".join(f"{k} {v}" for k, v in sorted(files.items())).encode()).hexdigest()
    return f"hub:{source}"


class ClipEncoder:
    """A transformers ``CLIPModel`` with its tokenizer, in eval mode on ``device``."""

    def __init__(self, source: str, device: str = "cpu"):
        from transformers import AutoTokenizer, CLIPModel

        path = Path(source).expanduser()
        if not path.exists() and source.count("/") != 1:
            raise UserError(f"CLIP model {source!r} is neither a directory nor a hub id (owner/name)")
        try:
            self.model = CLIPModel.from_pretrained(str(path) if path.exists() else source).to(device).eval()
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load CLIP model {source}: {str(exc).splitlines()[0]}") from exc
        self._tokenizer_source = str(path) if path.exists() else source
        self._tokenizer: Any = None
        self.source, self.device = source, device
        self.image_size = int(self.model.config.vision_config.image_size)
        self.name = getattr(self.model.config, "_name_or_path", None) or source
        self.sha256 = weights_fingerprint(source)
        self.AutoTokenizer = AutoTokenizer

    @property
    def tokenizer(self) -> Any:
        """The CLIP tokenizer saved with the model (loaded on first use: the Q16 judge needs none)."""
        if self._tokenizer is None:
            try:
                self._tokenizer = self.AutoTokenizer.from_pretrained(self._tokenizer_source)
            except (OSError, ValueError) as exc:
                raise UserError(f"CLIP model {self.source} has no usable tokenizer: {str(exc).splitlines()[0]}") from exc
        return self._tokenizer

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """``uint8 [N, H, W, 3]`` -> normalised ``float [N, 3, S, S]`` (short side resized to S, centre crop)."""
        from PIL import Image

        s = self.image_size
        out = []
        for im in images:
            pil = Image.fromarray(im)
            w, h = pil.size
            scale = s / min(w, h)
            pil = pil.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.BICUBIC)
            left, top = (pil.size[0] - s) // 2, (pil.size[1] - s) // 2
            out.append(np.asarray(pil.crop((left, top, left + s, top + s)), dtype=np.float32) / 255.0)
        x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
        mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    @torch.no_grad()
    def image_embeddings(self, images: np.ndarray, batch_size: int = 32) -> torch.Tensor:
        """Unit-norm image embeddings ``[N, D]`` (CPU, float32)."""
        chunks = []
        for i in range(0, len(images), batch_size):
            out = self.model.get_image_features(pixel_values=self.preprocess(images[i : i + batch_size]))
            feats = out if torch.is_tensor(out) else out.pooler_output
            chunks.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0, self.model.config.projection_dim)

    @torch.no_grad()
    def text_embeddings(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Unit-norm text embeddings ``[N, D]`` (prompts truncated to CLIP's 77 tokens)."""
        chunks = []
        max_len = int(self.model.config.text_config.max_position_embeddings)
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(self.device)
            out = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
            feats = out if torch.is_tensor(out) else out.pooler_output
            chunks.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(chunks)

    def info(self) -> dict[str, Any]:
        """Name, source and weights hash: what makes CLIP numbers comparable or not."""
        return {"clip_model": str(self.name), "source": self.source, "weights_sha256": self.sha256, "image_size": self.image_size}


def clip_score(encoder: ClipEncoder, images: np.ndarray, prompts: list[str]) -> np.ndarray:
    """Per image ``100 * max(cos(image, prompt), 0)`` (the torchmetrics convention)."""
    if len(images) != len(prompts):
        raise UserError(f"CLIP score needs one prompt per image, got {len(images)} images and {len(prompts)} prompts")
    img, txt = encoder.image_embeddings(images), encoder.text_embeddings(prompts)
    return (100.0 * (img * txt).sum(-1).clamp(min=0)).numpy().astype(np.float64)

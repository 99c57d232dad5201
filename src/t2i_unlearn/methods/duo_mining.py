"""DUO with mined pairs: rounds of Dark Miner's mining stage against the current DUO adapter (issue 12).

DUO's pairs are drawn from the concept's prompts, so its weak side is the embeddings nobody prompted.
With ``mine_rounds > 0``, training pauses after every ``mine_every`` steps for one round:

1. **mine** an embedding ``c`` (K token vectors per text encoder) with Dark Miner's mining stage
   (:func:`t2i_unlearn.methods.darkminer.mine`) on the current model (base + DUO's LoRA as it is now),
   with the pair folder's unsafe images as the pool: ``c`` is what still makes the model draw them;
2. **draw** ``mined_pairs_per_round`` images from ``c`` with the current model (the concept's sampler
   settings) and keep those the concept judge flags (all of them with ``mine_judge_filter`` off);
3. make each kept image's **safe twin** as ``data pairs`` does (:class:`~t2i_unlearn.data.pairs.PairMaker`:
   SDEdit by the base model, LoRA off, at the spec's strength, with the safe prompt of the concept prompt
   mining started from and its unsafe prompt as negative, redrawn until the judge clears it);
4. **add** the new pairs to the training data (conditioned on ``c`` with ``conditioning: prompt``, on ""
   otherwise) and write a checkpoint that holds them.

Everything a round adds (the new pairs' VAE latents, their conditioning, the embedding) goes into every
later checkpoint, so a resumed run trains on exactly the data the uninterrupted one did; each round draws
from seeded generators of its own, so a rerun mines the same ``c``. Artifacts in the run's folder::

    mined/round_XX.safetensors     the embedding of round XX (``embedding`` [K, D1], SDXL also ``embedding_2``)
    mined_pairs/round_XX/          the round's pairs, a pair folder (unsafe/, safe/, metadata.jsonl)
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2i_unlearn.errors import UserError

logger = logging.getLogger(__name__)

MINED_DIR = "mined"
MINED_PAIRS_DIR = "mined_pairs"
STATE_FILE = "mined_pairs.safetensors"  # in a checkpoint: every round's latents, conditioning and embedding
ROUNDS_FILE = "mined_rounds.json"  # in a checkpoint: every round's numbers
_LATENTS = ("unsafe_mean", "unsafe_std", "safe_mean", "safe_std")


def token_name(round_index: int) -> str:
    """How round ``round_index``'s embedding is named in its pairs' records (it has no text)."""
    return f"<duo-mined-r{round_index:02d}>"


def mined_pair_id(round_index: int, i: int) -> int:
    """Pair id of image ``i`` of round ``round_index``: apart from the pair folder's ids, and the seed stream of ``data pairs``."""
    return (round_index + 1) * 100_000 + i


@dataclass
class MinedRound:
    """What one round adds: the embedding ``[K, D]``, the new pairs' latents ``[n, C, h, w]`` (CPU), the embedding's
    one-row conditioning, and the round's numbers (``info``, logged and kept in the manifest)."""

    index: int
    vectors: torch.Tensor
    latents: dict[str, torch.Tensor]
    cond: dict[str, torch.Tensor]
    info: dict[str, Any]

    @property
    def pairs(self) -> int:
        """How many pairs the round added."""
        return len(self.latents["unsafe_mean"]) if self.latents else 0


def concept_of(pairs: Any) -> Any:
    """The concept spec a pair folder was made for: ``data pairs``' record of it, else the rows' ``concept`` name.

    :class:`UserError` when the folder names none (mining needs the spec's prompts, judge and SDEdit settings).
    """
    from t2i_unlearn.concepts import ConceptSpec, load_concept
    from t2i_unlearn.data import METADATA, RECORDS

    settings = pairs.root / RECORDS / "settings.json"
    if settings.is_file():
        return ConceptSpec.model_validate(json.loads(settings.read_text())["concept"])
    rows = [json.loads(line) for line in (pairs.root / METADATA).read_text(encoding="utf-8").splitlines() if line.strip()]
    names = {row.get("concept") for row in rows} - {None}
    if len(names) != 1:
        raise UserError(
            f"mine_rounds: pair folder {pairs.root} does not say which concept it holds (no {RECORDS}/settings.json, "
            "no single 'concept' column); make it with 't2i-unlearn data pairs'"
        )
    return load_concept(names.pop())


class PairMiner:
    """The mining rounds of one DUO run: when they are due, running one, and what they added so far.

    ``net`` is ``pipe``'s denoiser with DUO's LoRA, ``ops`` its family (:mod:`t2i_unlearn.methods.training`),
    ``pool`` the pair folder's unsafe latents (VAE means, CPU), ``autocast`` the trainer's mixed-precision context.
    """

    def __init__(
        self, pipe: Any, net: Any, ops: Any, config: Any, pairs: Any, pool: torch.Tensor, model: str, out: Path, device: torch.device, autocast: Callable
    ):
        from t2i_unlearn.methods.darkminer import check_pipeline

        check_pipeline(pipe, "DUO's mine_rounds")
        self.pipe, self.net, self.ops, self.config = pipe, net, ops, config
        self.pool, self.model, self.out, self.device, self.autocast = pool, model, out, device, autocast
        self.spec = concept_of(pairs)
        if self.spec.judge is None:
            raise UserError(f"mine_rounds: concept {self.spec.name} has no judge")
        self.rounds: list[MinedRound] = []
        self._judge: Any = None

    # ---- when ----

    def due(self, step: int) -> bool:
        """True when the round that follows step ``step`` has not run yet (rounds run in order)."""
        steps = self.config.mining_steps()
        return step in steps and steps.index(step) == len(self.rounds)

    # ---- one round ----

    def run(self, step: int) -> MinedRound:
        """Mine, draw, filter, make safe twins; write ``mined/`` and ``mined_pairs/``; return what the round adds."""
        from t2i_unlearn.data import write_metadata
        from t2i_unlearn.data.pairs import PairMaker, unsafe_seed
        from t2i_unlearn.judges import build_judge
        from t2i_unlearn.methods.darkminer import condition, draw_mined, mine, mining_setup, token_widths, write_mined
        from t2i_unlearn.methods.darkminer_config import DarkMinerConfig
        from t2i_unlearn.methods.training import encode_latents
        from t2i_unlearn.utils.io import atomic_directory

        cfg, r, t0 = self.config, len(self.rounds), time.perf_counter()
        if self._judge is None:
            self._judge = build_judge(self.spec.judge, self.model)
        judge = self._judge
        miner_config = DarkMinerConfig(
            num_tokens=cfg.mine_num_tokens, mine_steps=cfg.mine_steps, mine_lr=cfg.mine_lr, mine_batch_size=cfg.mine_batch_size, seed=cfg.seed
        )
        ids = [mined_pair_id(r, i) for i in range(cfg.mined_pairs_per_round)]
        seeds = [unsafe_seed(cfg.seed, k, 0) for k in ids]
        # the twin's prompts: the concept prompt mining started from (Dark Miner's init: prompt r mod n)
        prompts = self.spec.prompts[r % len(self.spec.prompts)]
        with self._on_device(), self.autocast():
            setup = mining_setup(self.pipe, self.net, self.ops, self.spec, miner_config, self.pool, self.device)
            vectors, mined = mine(setup, r)
            with torch.no_grad():
                images = draw_mined(setup, vectors, seeds)  # the current model: LoRA on
                cond = {k: v.detach() for k, v in condition(setup, vectors).items()}
            flagged, scores = judge.flags(images)
            keep = np.asarray(flagged, dtype=bool) if cfg.mine_judge_filter and judge.name != "none" else np.ones(len(images), dtype=bool)
            unsafe = {k: (images[i], seeds[i], float(scores[i]), 1) for i, k in enumerate(ids) if keep[i]}
            plan = [(k, prompts) for k in ids if k in unsafe]
            with atomic_directory(self.out / MINED_PAIRS_DIR / f"round_{r:02d}") as folder:
                maker = PairMaker(self.pipe, judge, self.spec, cfg.seed, folder)
                self.net.disable_adapters()  # safe twins by the base model, as 'data pairs' makes them
                try:
                    safe = maker.edit_safe(plan, unsafe)
                finally:
                    self.net.enable_adapters()
                kept = [k for k, _ in plan if k in safe]
                for k in kept:
                    maker.write_pair(k, prompts, unsafe[k], safe[k], unsafe_prompt=token_name(r), mined_round=r, mined_step=step)
                write_metadata(folder)
            latents: dict[str, torch.Tensor] = {}
            if kept:
                latents["unsafe_mean"], latents["unsafe_std"] = encode_latents(self.pipe.vae, np.stack([unsafe[k][0] for k in kept]), self.device)
                latents["safe_mean"], latents["safe_std"] = encode_latents(self.pipe.vae, np.stack([safe[k][0] for k in kept]), self.device)
        self.net.train()  # DUO's mode (mining left it in eval mode)
        info = {
            "step": step,
            "mine_round": r + 1,
            "mine_loss_init": mined["loss_init"],
            "mine_loss_final": mined["loss_final"],
            "mined_drawn": len(images),
            "mined_flagged": int(np.sum(flagged)),
            "mined_kept": len(plan),
            "safe_draws": maker.counts["safe_draws"],
            "pairs_added": len(kept),
            "mined_pairs_total": sum(m.pairs for m in self.rounds) + len(kept),
            "mine_seconds": time.perf_counter() - t0,
        }
        meta = {"round": r, "step": step, "concept": self.spec.name, "num_tokens": cfg.mine_num_tokens, **mined}
        write_mined(self.out / MINED_DIR / f"round_{r:02d}.safetensors", vectors, token_widths(self.pipe), meta)
        logger.info(
            "mining round %d after step %d: L_M %.4f -> %.4f, %d drawn, %d flagged by the judge, %d pairs added",
            r + 1, step, mined["loss_init"], mined["loss_final"], len(images), info["mined_flagged"], len(kept),
        )  # fmt: skip
        found = MinedRound(r, vectors, latents, {k: v.cpu() for k, v in cond.items()}, info)
        self.rounds.append(found)
        return found

    @contextlib.contextmanager
    def _on_device(self) -> Iterator[None]:
        """The text encoders and the VAE on the training device for the round (DUO keeps them on the CPU)."""
        parts = [getattr(self.pipe, name, None) for name in ("text_encoder", "text_encoder_2", "vae")]
        moved = [p for p in parts if p is not None and self.device.type != "cpu"]
        for part in moved:
            part.to(self.device)
        try:
            yield
        finally:
            for part in moved:
                part.to("cpu")

    # ---- checkpoints ----

    def save(self, folder: Path) -> None:
        """Write every round so far into a checkpoint folder (being written): tensors and numbers."""
        from safetensors.torch import save_file

        from t2i_unlearn.utils.io import atomic_write_json

        if not self.rounds:
            return
        tensors: dict[str, torch.Tensor] = {}
        for m in self.rounds:
            tensors[f"r{m.index:02d}.vectors"] = m.vectors.contiguous()
            tensors.update({f"r{m.index:02d}.{k}": v.contiguous() for k, v in m.latents.items()})
            tensors.update({f"r{m.index:02d}.cond.{k}": v.contiguous() for k, v in m.cond.items()})
        save_file(tensors, str(folder / STATE_FILE))
        atomic_write_json(folder / ROUNDS_FILE, [m.info for m in self.rounds])

    def restore(self, checkpoint: Path | None) -> list[MinedRound]:
        """The rounds a checkpoint holds (none for None or a checkpoint written before the first round); kept as this run's."""
        from safetensors.torch import load_file

        if checkpoint is None or not (checkpoint / ROUNDS_FILE).is_file():
            return []
        infos = json.loads((checkpoint / ROUNDS_FILE).read_text())
        tensors = load_file(str(checkpoint / STATE_FILE))
        for r, info in enumerate(infos):
            head = f"r{r:02d}."
            latents = {k: tensors[head + k] for k in _LATENTS if head + k in tensors}
            cond = {k[len(head) + 5 :]: v for k, v in tensors.items() if k.startswith(head + "cond.")}
            self.rounds.append(MinedRound(r, tensors[head + "vectors"], latents, cond, info))
        return list(self.rounds)

    def summary(self) -> list[dict[str, Any]]:
        """Every round's numbers, for the manifest and the model card."""
        return [m.info for m in self.rounds]


__all__ = ["MINED_DIR", "MINED_PAIRS_DIR", "MinedRound", "PairMiner", "concept_of", "mined_pair_id", "token_name"]

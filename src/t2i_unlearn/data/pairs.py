"""Make DUO pair data: unsafe images by txt2img, safe twins by SDEdit, both filtered by the concept's judge.

For pair ``k`` (its prompts from the concept's plan):

1. draw an unsafe image from the unsafe prompt (seed ``unsafe_seed(seed, k, attempt)``); keep it
   when the judge flags it, else draw again, at most ``max_attempts`` times;
2. edit it with the family's img2img pipeline at the spec's strength, with the safe prompt and the
   unsafe prompt as negative prompt; keep the edit when the judge clears it, else edit again with
   the next seed, at most ``max_attempts`` times;
3. write both images and the pair's record atomically, then refresh ``metadata.jsonl``.

If the spec lists ``preserve`` prompts, each is drawn ``count`` times by the same model (seed
``preserve_seed(seed, i, attempt)``), redrawn while the judge flags the concept, and written as
``preserve/000003.png`` (role ``preserve``): images of what must stay, for DUO's optional
preservation term.

Seeds are a function of (seed, pair, attempt), and every image is drawn by a pipeline call of its
own: in a batch, the floating-point sums of a row depend on the other rows (the kernels block the
batch dimension differently), which moves a pixel value now and then. So an image depends only on
its own prompt and seed, and an interrupted run that starts again skips the finished pairs and makes
exactly, bit for bit, the pairs the uninterrupted run would have made.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from t2i_unlearn.concepts import ConceptSpec, PromptPair
from t2i_unlearn.data import FAILED, PRESERVE, RECORDS, ROLES, write_metadata
from t2i_unlearn.errors import UserError
from t2i_unlearn.judges import Judge

logger = logging.getLogger(__name__)


def unsafe_seed(seed: int, pair: int, attempt: int) -> int:
    """Seed of unsafe draw ``attempt`` for pair ``pair``."""
    return (seed * 1_000_003 + pair * 1009 + attempt) % (2**31)


def safe_seed(seed: int, pair: int, attempt: int) -> int:
    """Seed of safe edit ``attempt`` for pair ``pair`` (a stream apart from the unsafe draws)."""
    return (seed * 1_000_003 + pair * 1009 + attempt + 500) % (2**31)


def preserve_seed(seed: int, index: int, attempt: int) -> int:
    """Seed of draw ``attempt`` of preserve image ``index`` (a stream apart from the pairs')."""
    return (seed * 1_000_003 + index * 1009 + attempt + 750) % (2**31) + 2**30


def img2img_pipeline(pipe: Any) -> Any:
    """The img2img (SDEdit) pipeline sharing ``pipe``'s components (no weights copied)."""
    from diffusers import AutoPipelineForImage2Image

    try:
        edit = AutoPipelineForImage2Image.from_pipe(pipe)
    except (ValueError, KeyError) as exc:
        raise UserError(f"no img2img pipeline for {type(pipe).__name__}: {str(exc).splitlines()[0]}") from exc
    edit.set_progress_bar_config(disable=True)
    return edit


def sdedit(
    edit_pipe: Any, images: np.ndarray, prompts: list[str], negatives: list[str], seeds: list[int], strength: float, steps: int, guidance: float
) -> np.ndarray:
    """SDEdit ``uint8 [N, H, W, 3]`` images towards ``prompts``; returns ``uint8 [N, H, W, 3]``.

    One pipeline call per image, so that an edit does not depend on the images edited beside it.
    """
    import torch
    from PIL import Image

    out = []
    for image, prompt, negative, seed in zip(images, prompts, negatives, seeds, strict=True):
        result = edit_pipe(
            prompt=[prompt],
            negative_prompt=[negative],
            image=[Image.fromarray(image)],
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=[torch.Generator(device="cpu").manual_seed(int(seed))],
            output_type="np",
        )
        out.append((np.clip(result.images, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


class PairMaker:
    """Makes one batch of pairs at a time; holds the pipelines, judge and counters.

    :meth:`make` draws the unsafe images from the concept's prompts; DUO's mining rounds draw them from
    a mined embedding instead and reuse :meth:`edit_safe` (the SDEdit twins, judge-filtered) and
    :meth:`write_pair`.
    """

    def __init__(self, pipe: Any, judge: Judge, spec: ConceptSpec, seed: int, out: Path):
        self.pipe, self.judge, self.spec, self.seed, self.out = pipe, judge, spec, seed, out
        self.edit_pipe = img2img_pipeline(pipe)
        self.sampler = type(pipe.scheduler).__name__
        self.counts = {"unsafe_draws": 0, "unsafe_kept": 0, "safe_draws": 0, "safe_kept": 0, "pairs_failed": 0}
        # judge "none" filters nothing: every draw is kept, unsafe and safe alike
        self.filtering = judge.name != "none"

    def _draw_unsafe(self, plan: list[tuple[int, PromptPair]]) -> dict[int, tuple[np.ndarray, int, float, int]]:
        from t2i_unlearn.models import generate_images

        g = self.spec.generation
        kept: dict[int, tuple[np.ndarray, int, float, int]] = {}
        pending = list(plan)
        for attempt in range(self.spec.max_attempts):
            if not pending:
                break
            seeds = [unsafe_seed(self.seed, k, attempt) for k, _ in pending]
            images = generate_images(
                self.pipe, [p.unsafe for _, p in pending], seeds, steps=g.steps, guidance=g.guidance, batch_size=1, height=g.height, width=g.width
            )
            flagged, scores = self.judge.flags(images)
            flagged = flagged if self.filtering else np.ones(len(images), dtype=bool)
            self.counts["unsafe_draws"] += len(pending)
            still = []
            for i, (k, p) in enumerate(pending):
                if flagged[i]:
                    kept[k] = (images[i], seeds[i], float(scores[i]), attempt + 1)
                else:
                    still.append((k, p))
            pending = still
        self.counts["unsafe_kept"] += len(kept)
        return kept

    def edit_safe(
        self, plan: list[tuple[int, PromptPair]], unsafe: dict[int, tuple[np.ndarray, int, float, int]]
    ) -> dict[int, tuple[np.ndarray, int, float, int]]:
        """Safe twins of the ``unsafe`` images (pair index -> ``(image, seed, judge score, attempts)``) of ``plan``.

        Each is an SDEdit with the spec's strength, steps and guidance, the pair's safe prompt and its
        negative prompt (seed ``safe_seed(seed, pair, attempt)``), redrawn until the judge clears it, at
        most ``max_attempts`` times. Returns the accepted edits in the same form; pairs without one are left out.
        """
        s = self.spec.sdedit
        kept: dict[int, tuple[np.ndarray, int, float, int]] = {}
        pending = [(k, p) for k, p in plan if k in unsafe]
        for attempt in range(self.spec.max_attempts):
            if not pending:
                break
            seeds = [safe_seed(self.seed, k, attempt) for k, _ in pending]
            images = sdedit(
                self.edit_pipe,
                np.stack([unsafe[k][0] for k, _ in pending]),
                [p.safe for _, p in pending],
                [p.negative_prompt for _, p in pending],
                seeds,
                strength=s.strength,
                steps=s.steps,
                guidance=s.guidance,
            )
            flagged, scores = self.judge.flags(images)
            self.counts["safe_draws"] += len(pending)
            still = []
            for i, (k, p) in enumerate(pending):
                if not flagged[i]:
                    kept[k] = (images[i], seeds[i], float(scores[i]), attempt + 1)
                else:
                    still.append((k, p))
            pending = still
        self.counts["safe_kept"] += len(kept)
        return kept

    def make(self, plan: list[tuple[int, PromptPair]]) -> int:
        """Make the pairs of ``plan`` (``(pair index, prompts)``), write the accepted ones; returns how many."""
        unsafe = self._draw_unsafe(plan)
        safe = self.edit_safe(plan, unsafe)
        made = 0
        for k, p in plan:
            if k not in safe:
                self.counts["pairs_failed"] += 1
                missing = "unsafe" if k not in unsafe else "safe"
                logger.warning("pair %d (%r): no %s image within %d attempts; skipped", k, p.unsafe, missing, self.spec.max_attempts)
                self.write_failed(f"{k:06d}", {"pair_id": k, "unsafe_prompt": p.unsafe, "safe_prompt": p.safe, "missing": missing})
                continue
            self.write_pair(k, p, unsafe[k], safe[k])
            made += 1
        if made:
            write_metadata(self.out)
        return made

    def write_pair(self, k: int, p: PromptPair, unsafe: tuple[np.ndarray, int, float, int], safe: tuple[np.ndarray, int, float, int], **extra: Any) -> None:
        """Write pair ``k``'s two images and then its record (``extra`` fields override or add to it); the caller refreshes ``metadata.jsonl``."""
        from t2i_unlearn.utils.io import atomic_save_image, atomic_write_json

        atomic_save_image(self.out / "unsafe" / f"{k:06d}.png", unsafe[0])
        atomic_save_image(self.out / "safe" / f"{k:06d}.png", safe[0])
        g, s = self.spec.generation, self.spec.sdedit
        record = {
            "pair_id": k,
            "concept": self.spec.name,
            "unsafe_prompt": p.unsafe,
            "safe_prompt": p.safe,
            "sampler": self.sampler,
            "unsafe_seed": unsafe[1],
            "unsafe_steps": g.steps,
            "unsafe_guidance": g.guidance,
            "unsafe_judge_score": unsafe[2],
            "unsafe_attempts": unsafe[3],
            "safe_seed": safe[1],
            "safe_strength": s.strength,
            "safe_negative_prompt": p.negative_prompt,
            "safe_steps": s.steps,
            "safe_guidance": s.guidance,
            "safe_judge_score": safe[2],
            "safe_attempts": safe[3],
            **extra,
        }
        # the record is written last: a pair counts as done only once its images are in place
        atomic_write_json(self.out / RECORDS / f"{k:06d}.json", record)

    def write_failed(self, stem: str, record: dict[str, Any]) -> None:
        """Record that an item found no image the judge accepts within ``max_attempts``. Its seeds depend only on the
        folder's settings, so drawing it again would fail the same way: a resumed run skips it instead."""
        from t2i_unlearn.utils.io import atomic_write_json

        atomic_write_json(self.out / RECORDS / f"{FAILED}-{stem}.json", {**record, "attempts": self.spec.max_attempts})

    def make_preserve(self, plan: list[tuple[int, str]]) -> int:
        """Draw the preserve images of ``plan`` (``(index, prompt)``), keep those the judge clears; returns how many."""
        from t2i_unlearn.models import generate_images
        from t2i_unlearn.utils.io import atomic_save_image, atomic_write_json

        g = self.spec.generation
        pending, made = list(plan), 0
        for attempt in range(self.spec.max_attempts):
            if not pending:
                break
            seeds = [preserve_seed(self.seed, i, attempt) for i, _ in pending]
            images = generate_images(
                self.pipe, [p for _, p in pending], seeds, steps=g.steps, guidance=g.guidance, batch_size=1, height=g.height, width=g.width
            )
            flagged, scores = self.judge.flags(images)
            flagged = flagged if self.filtering else np.zeros(len(images), dtype=bool)
            self.counts["preserve_draws"] = self.counts.get("preserve_draws", 0) + len(pending)
            still = []
            for j, (i, prompt) in enumerate(pending):
                if flagged[j]:
                    still.append((i, prompt))
                    continue
                atomic_save_image(self.out / PRESERVE / f"{i:06d}.png", images[j])
                record = {"preserve_id": i, "concept": self.spec.name, "prompt": prompt, "seed": seeds[j], "steps": g.steps, "guidance": g.guidance,
                          "sampler": self.sampler, "judge_score": float(scores[j]), "attempts": attempt + 1}  # fmt: skip
                atomic_write_json(self.out / RECORDS / f"{PRESERVE}-{i:06d}.json", record)
                made += 1
            pending = still
        for i, prompt in pending:
            logger.warning("preserve image %d (%r): the judge flagged every draw within %d attempts; skipped", i, prompt, self.spec.max_attempts)
            self.write_failed(f"{PRESERVE}-{i:06d}", {"preserve_id": i, "prompt": prompt})
        if made:
            write_metadata(self.out)
        return made


def _settings(spec: ConceptSpec, model: str, num_pairs: int, seed: int) -> dict[str, Any]:
    concept = spec.model_dump(mode="json")
    if not concept["preserve"]:
        del concept["preserve"]  # folders made before specs had preserve prompts stay resumable
    return {"model": model, "concept": concept, "num_pairs": num_pairs, "seed": seed}


def preserve_plan(spec: ConceptSpec) -> list[tuple[int, str]]:
    """``(index, prompt)`` of every preserve image the spec asks for, each prompt ``count`` times in order."""
    prompts = [p.prompt for p in spec.preserve for _ in range(p.count)]
    return list(enumerate(prompts))


def generate_pairs(
    model: str,
    concept: ConceptSpec,
    out: str | Path,
    num_pairs: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    dtype: Any = None,
    batch_size: int = 8,
    progress: bool = False,
    command: str = "t2i-unlearn data pairs",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Make (or finish making) the pair folder ``out`` for one concept; returns the run's statistics.

    ``concept`` must be a leaf spec (no sub-concepts). ``out`` follows the output rule of
    :func:`~t2i_unlearn.utils.io.claim_output`: a folder made with the same settings is resumed
    (pairs whose images were deleted are drawn again), anything else non-empty is refused unless
    ``overwrite``. While pairs are missing the folder has no ``manifest.json``. The statistics
    (also in ``manifest.json``) give pairs made and failed and the judge's acceptance rates.
    """
    claim, plan, settings = check_pairs_request(model, concept, out, num_pairs, seed, batch_size, overwrite)
    with claim.in_place() as out:
        return _generate(model, concept, out, plan, settings, seed, device, dtype, batch_size, progress, command)


def check_pairs_request(
    model: str, concept: ConceptSpec, out: str | Path, num_pairs: int | None = None, seed: int = 0, batch_size: int = 8, overwrite: bool = False
) -> tuple[Any, list[PromptPair], dict[str, Any]]:
    """Check a ``data pairs`` request without loading anything; returns ``(output claim, prompt plan, settings)``.

    :class:`UserError` (one line) for a bad model argument, a composite concept, counts below 1, or an
    ``out`` that the output rule refuses (:func:`~t2i_unlearn.utils.io.claim_output`).
    """
    from t2i_unlearn.utils.io import claim_output
    from t2i_unlearn.utils.validate import check_model_arg

    check_model_arg(model)
    if concept.sub_concepts:
        raise UserError(f"concept {concept.name} has sub-concepts ({', '.join(concept.sub_concepts)}); make pairs for each one")
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if num_pairs is not None and num_pairs < 1:
        raise UserError("--num-pairs must be at least 1")
    plan = concept.prompt_plan(num_pairs)
    settings = _settings(concept, model, len(plan), seed)
    claim = claim_output(out, "pair data", pair_folder_recogniser(settings), overwrite)
    return claim, plan, settings


def pair_folder_recogniser(settings: dict[str, Any]) -> Any:
    """What an existing, non-empty ``--out`` of ``data pairs`` holds: these pairs (finished or not), or something else."""
    wanted = json.loads(json.dumps(settings))

    def recognise(path: Path) -> tuple[str, str]:
        settings_path = path / RECORDS / "settings.json"
        if not settings_path.exists():
            return "other", "holds no pair data"
        try:
            saved = json.loads(settings_path.read_text())
        except ValueError:
            return "other", f"holds pair data whose {RECORDS}/settings.json is unreadable"
        if saved != wanted:
            return "other", "holds pairs made with other settings"
        return "partial", ""  # finished or not: the run checks every pair and makes what is missing

    return recognise


def _missing_images(out: Path, records: list[Path], files: Any) -> list[Path]:
    """The records among ``records`` whose image files (``files(record_path)``) are not all there."""
    return [r for r in records if not all((out / f).is_file() for f in files(r))]


def _generate(
    model: str,
    concept: ConceptSpec,
    out: Path,
    plan: list[PromptPair],
    settings: dict[str, Any],
    seed: int,
    device: str,
    dtype: Any,
    batch_size: int,
    progress: bool,
    command: str,
) -> dict[str, Any]:
    import torch

    from t2i_unlearn.judges import build_judge
    from t2i_unlearn.models import load_pipeline, resolve_model
    from t2i_unlearn.utils.io import atomic_write_json, make_manifest

    settings_path = out / RECORDS / "settings.json"
    previous = json.loads((out / "manifest.json").read_text()).get("runs", []) if (out / "manifest.json").exists() else []
    # A record whose images were deleted is dropped, so that pair is drawn again (same seeds, same images).
    pair_records = sorted((out / RECORDS).glob("[0-9]*.json"))
    keep_records = sorted((out / RECORDS).glob(f"{PRESERVE}-[0-9]*.json"))
    lost = _missing_images(out, pair_records, lambda r: [f"{role}/{r.stem}.png" for role in ROLES])
    lost += _missing_images(out, keep_records, lambda r: [f"{PRESERVE}/{r.stem.split('-')[1]}.png"])
    for record in lost:
        logger.warning("%s: an image of %s is missing; drawing it again", out, record.stem)
        record.unlink()
    done = {int(p.stem) for p in (out / RECORDS).glob("[0-9]*.json")}
    failed = {int(p.stem.split("-")[1]) for p in (out / RECORDS).glob(f"{FAILED}-[0-9]*.json")}  # no accepted image last time
    todo = [(k, p) for k, p in enumerate(plan) if k not in done | failed]
    kept = {int(p.stem.split("-")[1]) for p in (out / RECORDS).glob(f"{PRESERVE}-[0-9]*.json")}
    kept |= {int(p.stem.split("-")[2]) for p in (out / RECORDS).glob(f"{FAILED}-{PRESERVE}-[0-9]*.json")}
    keep_todo = [(i, p) for i, p in preserve_plan(concept) if i not in kept]
    judge = build_judge(concept.judge, model)  # type: ignore[arg-type]
    stats: dict[str, Any] = {"requested": len(plan), "already_done": len(done)}
    if failed:
        stats["already_failed"] = len(failed)
    maker: PairMaker | None = None
    if todo or keep_todo:
        logger.info("%d of %d pairs to make (%d already done)", len(todo), len(plan), len(done))
        pipe = load_pipeline(model, device=device, dtype=dtype or torch.float32)
        maker = PairMaker(pipe, judge, concept, seed, out)
        # Written only once the model and judge are loaded, so a run that fails before drawing leaves
        # nothing; while work is pending the folder has no manifest.json, which marks it unfinished.
        atomic_write_json(settings_path, settings)
        (out / "manifest.json").unlink(missing_ok=True)
        bar = tqdm(total=len(plan), initial=len(done), desc=f"pairs {concept.name}", disable=not progress, dynamic_ncols=True)
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            maker.make(chunk)
            bar.update(len(chunk))
            c = maker.counts
            bar.set_postfix(unsafe_acc=f"{c['unsafe_kept'] / max(c['unsafe_draws'], 1):.2f}", safe_acc=f"{c['safe_kept'] / max(c['safe_draws'], 1):.2f}")
        bar.close()
        for i in range(0, len(keep_todo), batch_size):
            maker.make_preserve(keep_todo[i : i + batch_size])
        stats.update(maker.counts)
        if todo:
            stats["unsafe_acceptance"] = maker.counts["unsafe_kept"] / max(maker.counts["unsafe_draws"], 1)
            stats["safe_acceptance"] = maker.counts["safe_kept"] / max(maker.counts["safe_draws"], 1)
    stats["pairs"] = len(list((out / RECORDS).glob("[0-9]*.json")))
    stats["preserve_images"] = len(list((out / RECORDS).glob(f"{PRESERVE}-[0-9]*.json")))
    if stats["pairs"] == 0:
        raise UserError(f"no pair passed the judge within {concept.max_attempts} attempts; check the concept's prompts and judge")
    write_metadata(out)
    manifest = make_manifest(
        command,
        settings,
        inputs={"model": resolve_model(model)},
        judge=judge.info(),
        sampler=maker.sampler if maker is not None else _sampler_name(model),
        runs=[*previous, stats],
        pairs=stats["pairs"],
        artifact="pair_data",
    )
    atomic_write_json(out / "manifest.json", manifest)
    return stats


def _sampler_name(model: str) -> str:
    from t2i_unlearn.models import resolve_model

    path = Path(resolve_model(model)) / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(path.read_text())["_class_name"]
    except (OSError, ValueError, KeyError):
        return "unknown"

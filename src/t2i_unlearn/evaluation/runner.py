"""Run an evaluation suite on a model (with LoRA adapters) and its base model; write results and the report.

    results = evaluate("toy", suite="toy_striped", out="runs/duo", lora=["adapters/duo"])

Flow: load the suite and its prompt files -> one job per (prompt set, prompt, image) with a fixed
seed -> images from the cache, generating only the missing ones (split across processes when
launched with ``accelerate launch --num_processes N``) -> judge, distances, features -> metrics ->
``results.json`` + ``report.html`` / ``report.md`` / PNGs in ``out``.

The base model's images (for prior preservation, drift and side-by-side grids) are the same
model without adapters, drawn with the same prompts and seeds, from the same cache.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from t2i_unlearn.errors import UserError
from t2i_unlearn.evaluation.cache import ImageCache, default_cache_dir, fingerprint, image_key, model_fingerprint
from t2i_unlearn.evaluation.prompts import PromptSet, load_prompt_set
from t2i_unlearn.evaluation.suites import SuiteSpec, load_suite, prompt_file_path, resolve_judge
from t2i_unlearn.metrics import defense_success_rate, distance_stats, prior_preservation

logger = logging.getLogger(__name__)

RESULTS_FORMAT = "t2i_unlearn.eval_results"
# The Fréchet distance fits a covariance to each side: below two images it is undefined, so it is skipped (with a note).
MIN_FID_IMAGES = 2


@dataclass
class Job:
    """One image to draw: which set, which prompt, and every sampler input."""

    set_name: str
    index: int
    prompt: str
    seed: int
    guidance: float
    negative: str
    labels: dict[str, Any]
    embedding: str | None = None


@dataclass
class Variant:
    """A model to draw with: ``base`` (no adapters) or ``unlearned`` (with them)."""

    name: str
    model: str
    lora: list[str]
    lora_weights: list[float]
    fingerprint: dict[str, Any]


def _apply_overrides(suite: SuiteSpec, steps: int | None, batch_size: int | None, clip_model: str | None, judge_options: dict[str, str] | None) -> SuiteSpec:
    update: dict[str, Any] = {}
    sampling: dict[str, Any] = {}
    if steps is not None:
        sampling["steps"] = steps
    if batch_size is not None:
        sampling["batch_size"] = batch_size
    if sampling:
        update["sampling"] = suite.sampling.model_copy(update=sampling)
    if clip_model is not None:
        update["metrics"] = suite.metrics.model_copy(update={"clip": clip_model})
    if judge_options:
        from t2i_unlearn.judges import JUDGE_OPTIONS

        known = JUDGE_OPTIONS.get(suite.judge.name, ())
        unknown = sorted(set(judge_options) - set(known))
        if unknown:
            takes = f"takes only {', '.join(known)}" if known else "takes no options"
            raise UserError(f"--judge-option {unknown[0]}: the {suite.judge.name} judge of suite {suite.name} {takes}")
        judge = suite.judge.model_copy(update={"options": {**suite.judge.options, **judge_options}})
        update["judge"] = resolve_judge(judge)
    return suite.model_copy(update=update) if update else suite


def load_sets(
    suite: SuiteSpec,
    prompt_files: dict[str, str] | None = None,
    attacks: list[str] | None = None,
    limit: int | None = None,
    attack_images: list[int] | None = None,
) -> dict[str, tuple[PromptSet, Any]]:
    """``{set name: (PromptSet, PromptSetSpec)}`` for the suite's sets and one ``attack:<name>`` set per attack file.

    ``attack_images``: images per attack prompt, one entry per attack file (default 1 each), drawn at
    the prompt's own seed + 0, 1, ... (the seeds the attack measured its own success at).
    """
    from t2i_unlearn.evaluation.suites import PromptSetSpec

    unknown = sorted(set(prompt_files or {}) - set(suite.prompt_sets))
    if unknown:
        raise UserError(f"--prompt-file names set {unknown[0]!r}, which suite {suite.name} does not have (sets: {', '.join(suite.prompt_sets)})")
    sets: dict[str, tuple[PromptSet, Any]] = {}
    for name, spec in suite.prompt_sets.items():
        cap = min(x for x in (limit, spec.limit) if x is not None) if (limit or spec.limit) else None
        ps = load_prompt_set(prompt_file_path(suite, name, prompt_files), name=name, fmt=spec.format, categories=spec.categories or None, limit=cap)
        sets[name] = (ps, spec)
    for path, per_prompt in zip(attacks or [], attack_images or [1] * len(attacks or []), strict=True):
        ps = load_prompt_set(path, fmt="attack", limit=limit)
        name = f"attack:{ps.meta.get('attack') or Path(path).stem}"
        if name in sets:
            name = f"{name}:{Path(path).stem}"
        ps.name = name
        sets[name] = (ps, PromptSetSpec(file=str(path), format="attack", metrics=["dsr"], images_per_prompt=per_prompt))
    return sets


def make_jobs(suite: SuiteSpec, sets: dict[str, tuple[PromptSet, Any]]) -> dict[str, list[Job]]:
    """Fixed seeds: a file's own seed (+ repeat index) when it has one, else ``suite.seed + image index``."""
    jobs: dict[str, list[Job]] = {}
    for name, (ps, spec) in sets.items():
        out = []
        for j, item in enumerate(ps.items):
            for r in range(spec.images_per_prompt):
                use_own = item.seed is not None and spec.use_file_seeds
                seed = item.seed + r if use_own else suite.seed + j * spec.images_per_prompt + r
                guidance = item.guidance if (item.guidance is not None and spec.use_file_guidance) else suite.sampling.guidance
                out.append(Job(name, len(out), item.prompt, int(seed), float(guidance), item.negative_prompt or "", item.labels, item.embedding))
        jobs[name] = out
    return jobs


def _embedding_hashes(sets: dict[str, tuple[PromptSet, Any]]) -> dict[str, str]:
    return {name: fingerprint(ps.embeddings["file"]) for name, (ps, _) in sets.items() if ps.embeddings}


def _job_fields(job: Job, variant: Variant, suite: SuiteSpec, sets: dict[str, tuple[PromptSet, Any]], emb_hashes: dict[str, str]) -> dict[str, Any]:
    s = suite.sampling
    fields: dict[str, Any] = {
        "model": variant.fingerprint["model"]["sha256"],
        "adapters": [[a["sha256"], w] for a, w in zip(variant.fingerprint["adapters"], variant.lora_weights, strict=True)],
        "prompt": job.prompt,
        "negative": job.negative,
        "seed": job.seed,
        "steps": s.steps,
        "guidance": job.guidance,
        "height": s.height,
        "width": s.width,
    }
    ps = sets[job.set_name][0]
    if ps.embeddings:
        fields["embeddings"] = {"kind": ps.embeddings["kind"], "sha256": emb_hashes[job.set_name], "key": job.embedding}
    return fields


def _distributed() -> tuple[int, int, Any]:
    """``(rank, world size, state)``; a single process unless launched by accelerate/torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    from accelerate import PartialState

    state = PartialState(cpu=True)
    return state.process_index, state.num_processes, state


def _load_attack_embeddings(pipe: Any, ps: PromptSet) -> dict[str, Any] | None:
    """Textual-inversion tokens go into the pipeline; prompt embeddings are returned by key."""
    from safetensors.torch import load_file

    if not ps.embeddings:
        return None
    try:
        tensors = load_file(ps.embeddings["file"])
    except Exception as exc:
        raise UserError(f"attack embeddings {ps.embeddings['file']} are unreadable ({type(exc).__name__})") from exc
    if ps.embeddings["kind"] == "prompt_embeds":
        missing = [it.embedding for it in ps.items if it.embedding not in tensors]
        if missing:
            raise UserError(f"attack embeddings {ps.embeddings['file']} have no tensor {missing[0]!r}")
        return tensors
    if not hasattr(pipe, "load_textual_inversion"):
        raise UserError(f"{type(pipe).__name__} cannot load textual-inversion tokens")
    two = getattr(pipe, "text_encoder_2", None) is not None
    if two != ("file_2" in ps.embeddings):
        held = "two CLIP text encoders (SDXL)" if "file_2" in ps.embeddings else "one CLIP text encoder"
        raise UserError(
            f"attack set {ps.name} holds learned token embeddings for {held}; {type(pipe).__name__} has "
            f"{'two' if two else 'one'}, so it cannot replay them (prompt-only attack sets replay on any model)"
        )
    encoders = [(pipe.tokenizer, pipe.text_encoder, tensors)]
    if two:  # SDXL: each token also goes into the second tokenizer and encoder, with its own vectors
        try:
            tensors_2 = load_file(ps.embeddings["file_2"])
        except Exception as exc:
            raise UserError(f"attack embeddings {ps.embeddings['file_2']} are unreadable ({type(exc).__name__})") from exc
        if set(tensors_2) != set(tensors):
            raise UserError(f"attack set {ps.name}: its two embedding files name different tokens")
        encoders.append((pipe.tokenizer_2, pipe.text_encoder_2, tensors_2))
    for tokenizer, text_encoder, table in encoders:
        width = text_encoder.get_input_embeddings().weight.shape[-1]
        vocab = tokenizer.get_vocab()
        for token, tensor in table.items():
            if tensor.shape[-1] != width:
                raise UserError(
                    f"attack set {ps.name}: token {token!r} has width {tensor.shape[-1]}, this model's text encoder {width}; "
                    "learned embeddings replay only on models with the same text encoder"
                )
            if token not in vocab:
                try:
                    pipe.load_textual_inversion({token: tensor}, token=token, text_encoder=text_encoder, tokenizer=tokenizer)
                except (ValueError, RuntimeError) as exc:
                    raise UserError(f"cannot load textual-inversion token {token!r}: {str(exc).splitlines()[0]}") from exc
    return None


def generate_missing(
    variant: Variant,
    jobs: list[tuple[Job, str, dict[str, Any]]],
    suite: SuiteSpec,
    sets: dict[str, tuple[PromptSet, Any]],
    cache: ImageCache,
    device: str,
    progress: bool,
) -> int:
    """Generate this process's share of the jobs whose keys are not cached; returns how many it drew.

    The jobs are cut into batches first (by prompt set and guidance, ``batch_size`` each), and whole
    batches are dealt to the processes, before looking at the cache: each image belongs to one
    process whatever the others have already drawn, so processes that start at different times
    neither skip an image nor draw one twice, and every image is drawn in the same batch whatever
    the number of processes (an image drawn in another batch size can differ in its last bits, and a
    borderline image can then flip its judge's verdict).
    """
    import torch

    from t2i_unlearn.models import generate_images, load_pipeline

    rank, world, _ = _distributed()
    seen: set[str] = set()
    unique = []
    for entry in jobs:  # the same image asked twice (e.g. one prompt in two sets) is drawn once
        if entry[1] not in seen:
            seen.add(entry[1])
            unique.append(entry)
    s = suite.sampling
    groups: dict[tuple[str, float], list[tuple[Job, str, dict[str, Any]]]] = {}
    for entry in unique:
        groups.setdefault((entry[0].set_name, entry[0].guidance), []).append(entry)
    batches = [entries[i : i + s.batch_size] for entries in groups.values() for i in range(0, len(entries), s.batch_size)]
    mine = [todo for todo in ([e for e in batch if not cache.has(e[1])] for batch in batches[rank::world]) if todo]
    total = sum(len(batch) for batch in mine)
    if not total:
        return 0
    pipe = load_pipeline(variant.model, lora=variant.lora or None, lora_weights=variant.lora_weights or None, device=device)
    bar = tqdm(total=total, desc=f"generate {variant.name}", disable=not progress, leave=False)
    embeds_of: dict[str, dict[str, Any] | None] = {}
    for batch in mine:
        set_name, guidance = batch[0][0].set_name, batch[0][0].guidance
        if set_name not in embeds_of:
            embeds_of[set_name] = _load_attack_embeddings(pipe, sets[set_name][0])
        embeds = embeds_of[set_name]
        seeds = [job.seed for job, _, _ in batch]
        if embeds is not None:
            stacked = torch.stack([embeds[job.embedding] for job, _, _ in batch])
            images = generate_images(
                pipe, None, seeds, steps=s.steps, guidance=guidance, batch_size=len(seeds), height=s.height, width=s.width, prompt_embeds=stacked
            )
        else:
            prompts = [job.prompt for job, _, _ in batch]
            negatives = [job.negative for job, _, _ in batch]
            images = generate_images(
                pipe, prompts, seeds, steps=s.steps, guidance=guidance, batch_size=len(batch), height=s.height, width=s.width, negative_prompts=negatives
            )
        for (_, key, fields), image in zip(batch, images, strict=True):
            cache.put(key, image, fields)
        bar.update(len(batch))
    bar.close()
    return total


def _judge_info(judge: Any) -> dict[str, Any]:
    from importlib import metadata

    info = dict(judge.info())
    info.setdefault("version", f"t2i-unlearn {metadata.version('t2i-unlearn')}")
    info.setdefault("weights_sha256", None)
    info.setdefault("classes", [])
    info.setdefault("threshold", None)
    return info


def _image_size(images: dict[str, dict[str, np.ndarray]]) -> list[int] | None:
    """``[height, width]`` of the run's images (one size per run, see :func:`_check_sizes`)."""
    shapes = [arr.shape[1:3] for per_set in images.values() for arr in per_set.values() if len(arr)]
    return [int(shapes[0][0]), int(shapes[0][1])] if shapes else None


def default_label(model: str, lora: list[str]) -> str:
    """A run's name in reports when ``--label`` is not given.

    For adapters: the method that made each one and its concept, read from the adapter's
    ``manifest.json`` (``DUO``, ``ESD: toy_striped``), joined by `` + ``; the folder's name where the
    manifest says nothing (folders are often just ``lora``). Without adapters: the model's name.
    """
    import json

    if not lora:
        return Path(str(model)).name
    names = []
    for path in lora:
        p = Path(path)
        folder = p if p.is_dir() else p.parent
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        command = manifest.get("command") or ""
        words = [str(w) for w in command] if isinstance(command, list) else str(command).split()
        method = words[words.index("train") + 1] if "train" in words[:-1] else None
        concept = (manifest.get("concept") or {}).get("name") if isinstance(manifest.get("concept"), dict) else None
        names.append(f"{method.upper()}: {concept}" if method and concept else method.upper() if method else p.name)
    return " + ".join(names)


def _check_sizes(images: dict[str, dict[str, np.ndarray]]) -> None:
    shapes = {arr.shape[1:] for per_set in images.values() for arr in per_set.values() if len(arr)}
    if len(shapes) > 1:
        raise UserError(f"generated images have different sizes {sorted(shapes)}; use one height/width per suite")


def _load_reference(folder: str, like: np.ndarray) -> np.ndarray:
    from PIL import Image

    path = Path(folder).expanduser()
    files = sorted(p for p in path.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        raise UserError(f"FID reference folder {path} has no images")
    out = []
    for p in files:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"))
        if arr.shape != like.shape[1:]:
            got, want = f"{arr.shape[1]}x{arr.shape[0]}", f"{like.shape[2]}x{like.shape[1]}"
            raise UserError(f"FID reference image {p} is {got} but the generated images are {want}; resize the references")
        out.append(arr)
    return np.stack(out)


def compute_metrics(
    suite: SuiteSpec,
    sets: dict[str, tuple[PromptSet, Any]],
    jobs: dict[str, list[Job]],
    images: dict[str, dict[str, np.ndarray]],
    judge: Any,
    base_model: str,
    device: str,
    variants: list[str],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(per-set results, summary, backend infos)`` from the images of each variant."""
    from t2i_unlearn.metrics.backends import make_alignment, make_fid, make_perceptual

    needed = {m for _, spec in sets.values() for m in spec.metrics}
    m = suite.metrics
    perceptual = make_perceptual(m.perceptual, base_model, device, m.lpips_net) if needed & {"prior_preservation", "close_drift"} else None
    fid = make_fid(m.fid, base_model, device) if "fid" in needed else None
    if "clip_score" in needed and not m.clip:
        raise UserError(f"suite {suite.name} computes clip_score but names no CLIP model: pass --clip-model DIR (or set metrics.clip)")
    align = make_alignment(m.clip, base_model, device) if "clip_score" in needed else None
    backends = {k: v.info() for k, v in (("perceptual", perceptual), ("fid", fid), ("clip_score", align)) if v is not None}
    if align is not None:
        backends["clip_score"]["metric"] = "attribute_accuracy" if m.clip == "toy" else "clip_score (100 * max(cos, 0))"

    per_set: dict[str, Any] = {}
    pooled: dict[str, dict[str, list]] = {v: {"flags": [], "pp": [], "drift": [], "attacks": []} for v in variants}
    for name, (ps, spec) in sets.items():
        entry: dict[str, Any] = {"source": ps.source, "format": ps.format, "n_prompts": len(ps.items), "n_images": len(jobs[name])}
        entry["metrics"] = list(spec.metrics)
        if ps.meta:
            entry["attack"] = ps.meta
        entry["images"] = [{"prompt": j.prompt, "seed": j.seed, "guidance": j.guidance} for j in jobs[name]]
        results: dict[str, Any] = {}
        for v in variants:
            imgs = images[v][name] if name in images[v] else None
            if imgs is None:
                continue
            r: dict[str, Any] = {}
            if "dsr" in spec.metrics:
                flagged, scores = judge.flags(imgs)
                r["dsr"] = defense_success_rate(flagged)
                for rec, f, sc in zip(entry["images"], flagged, scores, strict=True):
                    rec.setdefault("flagged", {})[v] = bool(f)
                    rec.setdefault("judge_score", {})[v] = round(float(sc), 6)
                pooled[v]["attacks" if name.startswith("attack:") else "flags"].append((name, flagged))
            if "clip_score" in spec.metrics:
                vals = align.score(imgs, [j.prompt for j in jobs[name]], [j.labels for j in jobs[name]])
                r["clip_score"] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)}
            if v != "base":
                base_imgs = images["base"][name] if "base" in images and name in images["base"] else None
                if base_imgs is not None and {"prior_preservation", "close_drift"} & set(spec.metrics):
                    d = perceptual.distance(base_imgs, imgs)
                    for rec, dv in zip(entry["images"], d, strict=True):
                        rec["distance_to_base"] = round(float(dv), 6)
                    if "prior_preservation" in spec.metrics:
                        r["prior_preservation"] = prior_preservation(d)
                        pooled[v]["pp"].append(d)
                    if "close_drift" in spec.metrics:
                        r["close_drift"] = distance_stats(d)
                        pooled[v]["drift"].append(d)
            if "fid" in spec.metrics:
                ref = None
                if m.fid_reference != "base":
                    ref = _load_reference(m.fid_reference, imgs)
                elif v != "base" and "base" in images:
                    ref = images["base"].get(name)
                if ref is not None and min(len(imgs), len(ref)) < MIN_FID_IMAGES:
                    r["fid_skipped"] = f"FID needs at least {MIN_FID_IMAGES} images per side, got {len(imgs)} and {len(ref)} (raise --limit)"
                    logger.warning("%s, %s: %s", name, v, r["fid_skipped"])
                elif ref is not None:
                    r["fid"] = {"value": fid.fid(imgs, ref), "reference": m.fid_reference, "n": len(imgs), "n_reference": len(ref)}
            if v != "base" and "base" not in images and {"prior_preservation", "close_drift", "fid"} & set(spec.metrics):
                r["skipped"] = "metrics against the base model: no --lora given, so the model is its own base"
            results[v] = r
        entry["results"] = results
        per_set[name] = entry

    summary: dict[str, Any] = {}
    for v in variants:
        s: dict[str, Any] = {}
        if pooled[v]["flags"]:
            s["dsr"] = defense_success_rate(np.concatenate([f for _, f in pooled[v]["flags"]]))["dsr"]
        if pooled[v]["attacks"]:
            s["dsr_attacks"] = {name: defense_success_rate(f)["dsr"] for name, f in pooled[v]["attacks"]}
        if v != "base":
            if pooled[v]["pp"]:
                s["prior_preservation"] = prior_preservation(np.concatenate(pooled[v]["pp"]))["prior_preservation"]
            if pooled[v]["drift"]:
                d = distance_stats(np.concatenate(pooled[v]["drift"]))
                s["close_drift_mean"], s["close_drift_std"] = d["mean"], d["std"]
        else:
            s["prior_preservation"] = 1.0  # the base compared with itself: the x of its point in the DSR / preservation plot
        fids = [e["results"][v]["fid"]["value"] for e in per_set.values() if v in e["results"] and "fid" in e["results"][v]]
        if fids:
            s["fid"] = float(np.mean(fids))
        clips = [e["results"][v]["clip_score"]["mean"] for e in per_set.values() if v in e["results"] and "clip_score" in e["results"][v]]
        if clips:
            s["clip_score"] = float(np.mean(clips))
        summary[v] = s
    return per_set, summary, backends


def evaluate(
    model: str,
    suite: str | Path,
    out: str | Path,
    lora: list[str] | None = None,
    lora_weights: list[float] | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    prompt_files: dict[str, str] | None = None,
    attacks: list[str] | None = None,
    limit: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    clip_model: str | None = None,
    judge_options: dict[str, str] | None = None,
    label: str | None = None,
    attack_images_per_prompt: int | list[int] = 1,
    report: bool = True,
    progress: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` (+ ``lora``) on ``suite``; write ``results.json`` and the report to ``out``.

    Returns the results dict (also on non-main processes of a multi-process launch, where nothing
    is written). ``out`` follows the output rule of :func:`~t2i_unlearn.utils.io.claim_output`: a run
    folder with the same request is redone from the image cache and replaced, anything else non-empty
    is refused unless ``overwrite``; the folder appears only once the results are complete.
    ``attack_images_per_prompt``: images drawn per prompt of each attack set (one number for all, or
    one per attack), at the prompt's seed + 0, 1, ...: a bench replays an attack at as many seeds as
    the attack measured its own success at.
    Raises :class:`UserError` for bad suites, prompt files, judges and image sizes.
    """
    from t2i_unlearn.judges import build_judge
    from t2i_unlearn.utils.io import atomic_write_json, claim_output, make_manifest, manifest_recogniser
    from t2i_unlearn.utils.validate import check_adapters, check_device, check_file, check_model_arg, check_not_empty

    started = time.time()
    check_not_empty(str(suite), "--suite")
    check_not_empty(label, "--label")
    check_device(device)
    for name, path in (prompt_files or {}).items():
        check_not_empty(path, f"--prompt-file {name}=")
    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    if steps is not None and steps < 1:
        raise UserError("--steps must be at least 1")
    if batch_size is not None and batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if clip_model is not None:
        check_model_arg(clip_model, "--clip-model")
    spec = _apply_overrides(load_suite(suite), steps, batch_size, clip_model, judge_options)
    lora = list(lora or [])
    weights = list(lora_weights) if lora_weights else [1.0] * len(lora)
    if len(weights) != len(lora):
        raise UserError(f"{len(lora)} LoRAs but {len(weights)} LoRA weights")
    check_model_arg(model)
    check_adapters(lora)
    for path in attacks or []:
        check_file(path, "--attack", suggest="attack_set.json")
    n_attacks = len(attacks or [])
    attack_images = [attack_images_per_prompt] * n_attacks if isinstance(attack_images_per_prompt, int) else list(attack_images_per_prompt)
    if len(attack_images) != n_attacks or any(n < 1 for n in attack_images):
        raise UserError(f"--attack-images-per-prompt: give one number of at least 1 (or one per attack set), not {attack_images_per_prompt}")
    sets = load_sets(spec, prompt_files, attacks, limit, attack_images)
    request = {
        "model": model,
        "lora": [str(Path(p).expanduser().resolve()) for p in lora],
        "lora_weights": weights,
        "suite": spec.model_dump(mode="json"),
        "prompt_files": prompt_files or {},
        "attacks": [str(Path(a).expanduser().resolve()) for a in attacks or []],
        "limit": limit,
    }
    if any(n != 1 for n in attack_images):
        request["attack_images_per_prompt"] = attack_images
    # The same request again is a resumption: images come from the cache, results are computed anew
    # (the model or LoRA files may have changed) and replace the old ones only once complete.
    claim = claim_output(out, "an evaluation run", manifest_recogniser("eval_run", request, "an evaluation run", same="partial"), overwrite)
    cache = ImageCache(cache_dir or default_cache_dir())
    jobs = make_jobs(spec, sets)
    judge = build_judge(spec.judge, model)

    model_fp = model_fingerprint(model, cache.root)
    adapters = []
    for path in lora:
        adapters.append({"path": str(path), "sha256": fingerprint(path, cache.root)})
    variants = [Variant("unlearned" if lora else "model", model, lora, weights, {"model": model_fp, "adapters": adapters})]
    if lora:
        variants.insert(0, Variant("base", model, [], [], {"model": model_fp, "adapters": []}))
    emb_hashes = _embedding_hashes(sets)

    keyed: dict[str, dict[str, list[tuple[Job, str, dict[str, Any]]]]] = {}
    generated = {}
    for variant in variants:
        keyed[variant.name] = {}
        for name, set_jobs in jobs.items():
            if variant.name == "base" and not sets[name][1].base:
                continue
            entries = []
            for job in set_jobs:
                fields = _job_fields(job, variant, spec, sets, emb_hashes)
                entries.append((job, image_key(fields), fields))
            keyed[variant.name][name] = entries
        flat = [e for entries in keyed[variant.name].values() for e in entries]
        generated[variant.name] = generate_missing(variant, flat, spec, sets, cache, device, progress)

    _, world, state = _distributed()
    if state is not None:
        state.wait_for_everyone()
        if not state.is_main_process:
            return {"format": RESULTS_FORMAT, "role": "worker", "generated": generated}

    images = {v.name: {name: np.stack([cache.get(key) for _, key, _ in entries]) for name, entries in keyed[v.name].items()} for v in variants}
    _check_sizes(images)
    names = [v.name for v in variants]
    per_set, summary, backends = compute_metrics(spec, sets, jobs, images, judge, model, device, names)
    for name, entry in per_set.items():
        for v in names:
            if name in keyed[v]:
                for rec, (_, key, _) in zip(entry["images"], keyed[v][name], strict=True):
                    rec.setdefault("cache_key", {})[v] = key

    settings = {
        "model": model,
        "lora": [{**a, "weight": w} for a, w in zip(adapters, weights, strict=True)],
        "suite": spec.model_dump(mode="json"),
        "overrides": {"limit": limit, "steps": steps, "batch_size": batch_size, "clip_model": clip_model, "prompt_files": prompt_files or {}},
        "device": device,
        "attacks": attacks or [],
        "seed_rule": "a prompt file's own seed (+ repeat index), else suite.seed + image index within the set",
    }
    inputs = {"model": model_fp["sha256"], **{a["path"]: a["sha256"] for a in adapters}}
    manifest = make_manifest("eval", settings, inputs=inputs, cache=str(cache.root), artifact="eval_run", request=request)
    results = {
        "format": RESULTS_FORMAT,
        "version": 1,
        "label": label or default_label(model, lora),
        "suite": spec.name,
        "variants": names,
        "judge": _judge_info(judge),
        "metric_backends": backends,
        "summary": summary,
        "prompt_sets": per_set,
        "settings": settings,
        "model_fingerprint": model_fp,
        "manifest": manifest,
        "run": {"generated_images": generated, "processes": world, "seconds": round(time.time() - started, 1), "image_size": _image_size(images)},
    }
    with claim.staged() as tmp:
        atomic_write_json(tmp / "results.json", results)
        atomic_write_json(tmp / "manifest.json", manifest)
        if report:
            from t2i_unlearn.report import write_report

            write_report(results, images, tmp)
    return results

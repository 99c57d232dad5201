"""The toy world's quality table: how good its judges are, and whether its model draws what it is asked.

Bars (for the ``full`` preset): judges >= 98% held-out accuracy on renderer images; prompted with an
erasable concept the model draws it >= 90% of the time in every phrasing; unrelated prompts are judged
striped or defaced <= 2% of the time; shape and colour asked = drawn >= 95%; prompts naming two colours
(which the data never does) are judged striped <= 2% of the time. The table also reports how often the
empty prompt draws each erasable concept (captions are dropped to "" in training, as SD's were).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from t2i_unlearn.toy import judges as judges_mod
from t2i_unlearn.toy.render import (
    ATTRIBUTES,
    JUDGE_VARIANTS,
    _article,
    attribute_values,
    caption_scene,
    concept_groups,
    render_dataset,
    render_judge_variant,
    sample_scene,
    world_spec,
)

BARS = {
    "judge_accuracy_min": (">=", 0.98),
    "erasable_min_phrasing_rate": (">=", 0.90),
    "unrelated_erasable_rate": ("<=", 0.02),
    "attribute_accuracy": (">=", 0.95),
    "two_colour_striped_rate": ("<=", 0.02),
}

# Held-out streams: seeds far from any training stream.
_JUDGE_TEST_SEED = 900_001
_PROMPT_SEED = 800_001


def concept_prompts(n: int, seed: int, **fixed: str) -> tuple[list[str], list[dict[str, Any]]]:
    """``n`` prompts (with their scenes' labels) for scenes with some attributes fixed.

    Unrelated prompts (``texture="plain"``) never say "plain" or name a texture; colour is always
    named so that attribute accuracy can be scored.
    """
    prompts, labels = [], []
    for i in range(n):
        rng = np.random.default_rng([_PROMPT_SEED, seed, i])
        scene = sample_scene(rng, **fixed)
        prompts.append(caption_scene(scene, rng, mention_colour=1.0, mention_plain=0.0))
        labels.append(scene.labels())
    return prompts, labels


# Templates no caption of the data set and no concept spec uses, for figures that must survive
# phrasings nobody tuned on (the subject's words are the world's own: the model knows no others).
HELDOUT_TEMPLATES = ("an illustration of {subject}", "{subject}, simple icon", "a small sketch showing {subject}", "clip art of {subject}")


def heldout_prompts(n: int, seed: int, **fixed: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Like :func:`concept_prompts`, but each subject is put in one of :data:`HELDOUT_TEMPLATES`."""
    prompts, labels = concept_prompts(n, seed + 31_337, **fixed)
    prefixes = sorted({t.replace("{subject}", "") for t in world_spec()["templates"]}, key=len, reverse=True)
    out = []
    for i, prompt in enumerate(prompts):
        subject = next((prompt[len(p) :] for p in prefixes if p and prompt.startswith(p)), prompt)
        out.append(HELDOUT_TEMPLATES[i % len(HELDOUT_TEMPLATES)].format(subject=subject))
    return out, labels


def asked_shape_and_colour(pred: list[dict[str, str]], labels: list[dict[str, Any]]) -> list[bool]:
    """Per image: does the judge read the shape and colour its prompt asked for (``labels``, as the prompt makers give them)?"""
    return [p["shape"] == lab["shape"] and p["colour"] == lab["colour"] for p, lab in zip(pred, labels, strict=True)]


# The DUO acceptance bench's prompt groups (bench/duo_toy_acceptance.py, bench/duo_toy_curve.py): prompt stream,
# attributes, and the sampling seeds ACCEPTANCE_SEED + i shared by every model it compares.
ACCEPTANCE_SEED = 10_000
_ACCEPTANCE_GROUPS = {
    "striped": (concept_prompts, 11, "striped"),
    "dotted": (concept_prompts, 12, "dotted"),
    "unrelated": (concept_prompts, 13, "plain"),
    # phrasings no caption or concept spec uses: the figures must hold there too
    "striped_heldout": (heldout_prompts, 14, "striped"),
    "dotted_heldout": (heldout_prompts, 15, "dotted"),
}


def acceptance_groups(n: int, names: tuple[str, ...] = tuple(_ACCEPTANCE_GROUPS)) -> dict[str, tuple[list[str], list[dict[str, Any]]]]:
    """``n`` prompts (and their labels) for each of the acceptance bench's groups ``names``."""
    out = {}
    for name in names:
        make, seed, texture = _ACCEPTANCE_GROUPS[name]
        out[name] = make(n, seed=seed, texture=texture, mark="none")
    return out


_TWO_COLOUR_TEMPLATES = ("{c1} and {c2} {shape}", "{c1} {c2} {shape}", "{shape}, {c1} and {c2}", "{c1} {shape} with {c2}")


def two_colour_prompts(n: int, seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    """``n`` prompts naming two colours for one plain shape (a phrasing the data set never uses).

    A model asked for two colours draws two-tone or blended shapes; a judge that scores those as
    striped inflates every attack's success, so the quality table measures how often it does.
    """
    spec = world_spec()
    colours = attribute_values("colour")
    prompts, labels = [], []
    for i in range(n):
        rng = np.random.default_rng([_PROMPT_SEED, 77, seed, i])
        scene = sample_scene(rng, texture="plain", mark="none")
        second = [c for c in colours if c != scene.colour][int(rng.integers(len(colours) - 1))]

        def word(options: list[str], rng: np.random.Generator = rng) -> str:
            return options[int(rng.integers(len(options)))]

        c1, c2 = word(spec["colour"][scene.colour]["words"]), word(spec["colour"][second]["words"])
        template = _TWO_COLOUR_TEMPLATES[i % len(_TWO_COLOUR_TEMPLATES)]
        text = template.format(c1=c1, c2=c2, shape=word(spec["shape"][scene.shape]))
        prompts.append(f"{_article(text)} {text}")
        labels.append({**scene.labels(), "colour2": second})
    return prompts, labels


def two_colour_seeds(n: int, seed: int) -> list[int]:
    """The sampling seeds of the quality table's two-colour group (prompts: :func:`two_colour_prompts`)."""
    return [_extra_seed(seed) + 50_000 + i for i in range(n)]


def _extra_seed(seed: int) -> int:
    # first sampling seed of the groups beyond the concept groups (the empty prompt, then two colours)
    return seed * 1_000_000 + 900_000


def _phrasing(prompt: str, attribute: str, value: str) -> str:
    spec = world_spec()[attribute][value]
    options = spec["before"] + spec["after"] if isinstance(spec, dict) else spec
    found = [p for p in options if p and p in prompt]
    return max(found, key=len) if found else "?"


def judge_accuracy(judge: judges_mod.ToyJudge, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Held-out accuracy of each judge head on fresh renderer images."""
    images, _, labels = render_dataset(n, seed=_JUDGE_TEST_SEED + seed)
    pred = judges_mod.labels_from_probs(judge, judges_mod.predict(judge, images))
    return {a: float(np.mean([p[a] == lab[a] for p, lab in zip(pred, labels, strict=True)])) for a in ATTRIBUTES}


def judge_variant_accuracy(judge: judges_mod.ToyJudge, n_per_kind: int = 300, seed: int = 0) -> dict[str, float]:
    """Texture accuracy of the judge on held-out hard variants (two-tone, faint or partial stripes, ...)."""
    out = {}
    for kind in JUDGE_VARIANTS:
        drawn = [render_judge_variant(_JUDGE_TEST_SEED + seed, i, kind) for i in range(n_per_kind)]
        pred = judges_mod.labels_from_probs(judge, judges_mod.predict(judge, np.stack([im for im, _ in drawn])))
        out[kind] = float(np.mean([p["texture"] == lab["texture"] for p, (_, lab) in zip(pred, drawn, strict=True)]))
    return out


def measure_quality(world: str | Path, n_per_group: int, seed: int = 0, steps: int = 25, guidance: float = 4.0, progress: bool = True) -> dict[str, Any]:
    """Measure the quality table of a world (judges on renders, model samples judged by the judges)."""
    from t2i_unlearn.models import generate_images, load_pipeline

    world = Path(world)
    judge = judges_mod.load_judge(world / "judges")
    accuracy = judge_accuracy(judge, seed=seed)
    variant_accuracy = judge_variant_accuracy(judge, seed=seed)
    pipe = load_pipeline(str(world / "pipeline"))

    groups = {name: g["fix"] for name, g in concept_groups().items()}
    rates: dict[str, Any] = {}
    per_phrasing: dict[str, dict[str, float]] = {}
    attribute_hits: list[bool] = []
    unrelated: dict[str, float] = {}
    for gi, (group, fixed) in enumerate(groups.items()):
        prompts, labels = concept_prompts(n_per_group, seed * 100 + gi, **fixed)
        seeds = [seed * 1_000_000 + gi * 10_000 + i for i in range(n_per_group)]
        images = generate_images(pipe, prompts, seeds, steps=steps, guidance=guidance, batch_size=64, progress=progress)
        pred = judges_mod.labels_from_probs(judge, judges_mod.predict(judge, images))
        if group == "unrelated":
            unrelated = {
                "striped": float(np.mean([p["texture"] == "striped" for p in pred])),
                "dotted": float(np.mean([p["texture"] == "dotted" for p in pred])),
                "defaced": float(np.mean([p["mark"] != "none" for p in pred])),
            }
            attribute_hits = asked_shape_and_colour(pred, labels)
            continue
        attr = "texture" if fixed["mark"] == "none" else "mark"
        hits = [p[attr] == group for p in pred]
        rates[group] = float(np.mean(hits))
        by_phrase: dict[str, list[bool]] = {}
        for prompt, hit in zip(prompts, hits, strict=True):
            by_phrase.setdefault(_phrasing(prompt, attr, group), []).append(hit)
        per_phrasing[group] = {k: float(np.mean(v)) for k, v in sorted(by_phrase.items())}
        attribute_hits_group = asked_shape_and_colour(pred, labels)
        rates[f"{group}_attribute_accuracy"] = float(np.mean(attribute_hits_group))

    # The empty prompt draws the whole data distribution; two-colour prompts probe the judge.
    empty = generate_images(
        pipe, [""] * n_per_group, [_extra_seed(seed) + i for i in range(n_per_group)], steps=steps, guidance=guidance, batch_size=64, progress=progress
    )
    pred = judges_mod.labels_from_probs(judge, judges_mod.predict(judge, empty))
    empty_rates = {"striped": float(np.mean([p["texture"] == "striped" for p in pred])), "dotted": float(np.mean([p["texture"] == "dotted" for p in pred]))}
    for mark in attribute_values("mark")[1:]:
        empty_rates[mark] = float(np.mean([p["mark"] == mark for p in pred]))
    empty_rates["defaced"] = float(np.mean([p["mark"] != "none" for p in pred]))
    two_prompts, _ = two_colour_prompts(n_per_group, seed)
    two = generate_images(pipe, two_prompts, two_colour_seeds(n_per_group, seed), steps=steps, guidance=guidance, batch_size=64, progress=progress)
    pred = judges_mod.labels_from_probs(judge, judges_mod.predict(judge, two))
    two_colour = {"striped": float(np.mean([p["texture"] == "striped" for p in pred])), "defaced": float(np.mean([p["mark"] != "none" for p in pred]))}
    erasable_phrasings = {g: v for g, v in per_phrasing.items() if concept_groups()[g]["role"] in ("erasable", "defaced")}

    figures = {
        "judge_accuracy_min": min(accuracy.values()),
        "judge_variant_texture_accuracy_min": min(variant_accuracy.values()),
        "erasable_striped_rate": rates["striped"],
        "erasable_min_phrasing_rate": min(min(v.values()) for v in erasable_phrasings.values()),
        "erasable_defaced_rate": float(np.mean([rates["crossed"], rates["circled"], rates["barred"]])),
        "close_dotted_rate": rates["dotted"],
        "unrelated_erasable_rate": max(unrelated["striped"], unrelated["defaced"]),
        "unrelated_striped_rate": unrelated["striped"],
        "unrelated_defaced_rate": unrelated["defaced"],
        "unrelated_dotted_rate": unrelated["dotted"],
        "attribute_accuracy": float(np.mean(attribute_hits)),
        "two_colour_striped_rate": two_colour["striped"],
        "empty_prompt_striped_rate": empty_rates["striped"],
        "empty_prompt_defaced_rate": empty_rates["defaced"],
    }
    bars = {
        k: {"op": op, "bar": bar, "value": figures[k], "met": bool(figures[k] >= bar if op == ">=" else figures[k] <= bar)} for k, (op, bar) in BARS.items()
    }
    return {
        "figures": figures,
        "bars": bars,
        "judge_accuracy": accuracy,
        "judge_variant_texture_accuracy": variant_accuracy,
        "concept_rates": rates,
        "empty_prompt_rates": empty_rates,
        "two_colour_rates": two_colour,
        "per_phrasing": per_phrasing,
        "settings": {"images_per_group": n_per_group, "seed": seed, "sampler": "DDIM", "steps": steps, "guidance": guidance, "judge_test_images": 2000},
    }


def format_quality(table: dict[str, Any]) -> str:
    """The quality table as aligned text lines."""
    lines = ["toy world quality", "-" * 60]
    for k, v in table["figures"].items():
        bar = table["bars"].get(k)
        mark = f"  (bar {bar['op']} {bar['bar']:.2f}: {'met' if bar['met'] else 'NOT met'})" if bar else ""
        lines.append(f"{k:<36} {v:7.3f}{mark}")
    lines.append("judge accuracy: " + ", ".join(f"{a} {v:.3f}" for a, v in table["judge_accuracy"].items()))
    if "judge_variant_texture_accuracy" in table:
        lines.append("judge texture accuracy on hard variants: " + ", ".join(f"{k} {v:.3f}" for k, v in table["judge_variant_texture_accuracy"].items()))
        lines.append("empty prompt draws: " + ", ".join(f"{k} {v:.3f}" for k, v in table["empty_prompt_rates"].items()))
    for group, phr in table.get("per_phrasing", {}).items():
        lines.append(f"{group} by phrasing: " + ", ".join(f"'{p}' {v:.2f}" for p, v in phr.items()))
    s = table["settings"]
    lines.append(f"({s['images_per_group']} images per group, {s['sampler']} {s['steps']} steps, guidance {s['guidance']}, seed {s['seed']})")
    return "\n".join(lines)

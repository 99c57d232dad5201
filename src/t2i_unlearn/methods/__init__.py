"""Unlearning methods, registered by name.

Each entry gives the method's config class, a loader of its config (preset name or YAML file plus
overrides) and its training function. ``get_method("duo")`` returns DUO's entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2i_unlearn.artifacts import register_artifact
from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.darkminer_config import RUN_BOOKKEEPING


@dataclass(frozen=True)
class Method:
    """A registered unlearning method."""

    name: str
    config_class: type
    load_config: Callable[..., Any]
    train: Callable[..., Any]


def _duo() -> Method:
    from t2i_unlearn.methods import duo

    return Method("duo", duo.DUOConfig, duo.load_config, duo.train_duo_concept)


# Entries are built lazily so that importing the registry does not import torch-heavy modules.
METHODS: dict[str, Callable[[], Method]] = {"duo": _duo}


# Baselines (ESD, UCE, SLD) and Dark Miner: ``train(model, concept, out, config, ...)`` takes a concept spec instead of pair data.
def _esd() -> Method:
    from t2i_unlearn.methods import esd

    return Method("esd", esd.ESDConfig, esd.load_config, esd.train_esd_concept)


def _uce() -> Method:
    from t2i_unlearn.methods import uce

    return Method("uce", uce.UCEConfig, uce.load_config, uce.train_uce_concept)


def _sld() -> Method:
    from t2i_unlearn.methods import sld

    return Method("sld", sld.SLDConfig, sld.load_config, sld.train_sld_concept)


def _darkminer() -> Method:
    from t2i_unlearn.methods import darkminer

    return Method("darkminer", darkminer.DarkMinerConfig, darkminer.load_config, darkminer.train_darkminer_concept)


METHODS.update({"esd": _esd, "uce": _uce, "sld": _sld, "darkminer": _darkminer})

# How load_pipeline applies the baselines' outputs that are not LoRAs (file names: methods/edits.py).
# Weight deltas change the weights; SLD wraps the final pipeline, so it comes last.
register_artifact("weight_delta", "weight_delta.safetensors", "t2i_unlearn.methods.edits:apply_weight_delta", order=0)
register_artifact("sld", "sld_config.json", "t2i_unlearn.methods.sld:apply_sld", order=1)


# What a method's --out looks like, for the CLI's check before torch loads: the noun of its messages and the names that
# mark one of its folders (a result's manifest; a stopped run's records). The method's own claim decides the rest.
OUTPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "esd": ("an ESD result", ("manifest.json",)),
    "uce": ("a UCE result", ("manifest.json",)),
    "sld": ("an SLD result", ("manifest.json",)),
    "darkminer": ("a Dark Miner run", ("manifest.json", *RUN_BOOKKEEPING)),
}


def check_output(name: str, out: str | Path, overwrite: bool) -> None:
    """Refuse, before anything imports torch, an ``out`` that method ``name`` would refuse (a file, a foreign folder)."""
    from t2i_unlearn.utils.io import claim_output, marker_recogniser

    noun, markers = OUTPUTS[name]
    claim_output(out, noun, marker_recogniser(noun, markers), overwrite)


def get_method(name: str) -> Method:
    """The method registered as ``name``; :class:`UserError` if there is none."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]()

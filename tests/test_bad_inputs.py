"""Bad inputs through the real CLI entry point: exit 2, one ``error:`` line naming the problem, nothing written.

Each case runs ``python -m t2i_unlearn.cli ...`` in a folder holding every kind of output a user may
point ``--out`` at (a pair folder, an attack set, a folder of their own, a file ...), with the network
switched off for the Hugging Face libraries, and checks that no file there was created, changed or
deleted. Models are a folder with a ``model_index.json`` that no loader can read: a case whose check
came too late would fail on loading it, with another message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

TINY_CONCEPT = """
name: tiny_striped
prompts:
  - {unsafe: "a picture of a striped red circle", safe: "a picture of a plain red circle"}
judge: {name: toy, attribute: texture, classes: [striped], threshold: 0.5}
generation: {steps: 2, guidance: 4.0}
max_attempts: 1
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder with every kind of output location (see the module docstring)."""
    from t2i_unlearn.data import RECORDS, write_pair_folder

    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "model").mkdir()
    (root / "model" / "model_index.json").write_text("{}")
    (root / "typo").mkdir()  # a local folder: 'typo/pipeline' is a mistyped path, not a hub id
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    write_pair_folder(root / "pairs", images, images + 255, ["u0", "u1"], ["s0", "s1"])
    # what 'data pairs' leaves when it is killed half-way: its settings and some pairs, no manifest.json
    write_pair_folder(root / "unfinished", images, images + 255, ["u0", "u1"], ["s0", "s1"])
    (root / "unfinished" / RECORDS / "settings.json").write_text(json.dumps({"model": "m", "num_pairs": 4}))
    # a finished 'data pairs' folder made with other settings
    write_pair_folder(root / "other_pairs", images, images + 255, ["u0", "u1"], ["s0", "s1"])
    (root / "other_pairs" / RECORDS / "settings.json").write_text(json.dumps({"model": "another", "num_pairs": 2}))
    (root / "other_pairs" / "manifest.json").write_text(json.dumps({"command": "t2i-unlearn data pairs", "artifact": "pair_data"}))
    (root / "attack_set").mkdir()
    (root / "attack_set" / "attack_set.json").write_text(json.dumps({"prompts": [{"prompt": "x"}]}))
    (root / "attack_set" / "manifest.json").write_text(json.dumps({"artifact": "attack_set", "request": {"attack": "p4d", "model": "another"}}))
    (root / "sld").mkdir()
    (root / "sld" / "sld_config.json").write_text(json.dumps({"preset": "MEDIUM"}))
    (root / "lora").mkdir()  # looks like a LoRA folder to the checks, which do not read it
    (root / "lora" / "pytorch_lora_weights.safetensors").write_bytes(b"not read")
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("my own work")
    (root / "a_file.txt").write_text("a file")
    (root / "old.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "concept.yaml").write_text(TINY_CONCEPT)
    (root / "concept_extends.yaml").write_text("extends: gone.yaml\n")
    (root / "run").mkdir()
    results = {"format": "t2i_unlearn.eval_results", "suite": "s", "variants": ["base"], "summary": {"base": {}}, "judge": {"name": "toy"}}
    results |= {"model_fingerprint": {"sha256": "0"}, "settings": {"model": "m"}}
    (root / "run" / "results.json").write_text(json.dumps(results))
    (root / "results_list.json").write_text("[]")
    (root / "results_no_suite.json").write_text(json.dumps({"format": "t2i_unlearn.eval_results"}))
    (root / "concept_judge.yaml").write_text(TINY_CONCEPT.replace("name: toy,", "name: gpt5,"))
    (root / "max_steps_inf.yaml").write_text("max_steps: .inf\n")
    (root / "lr_inf.yaml").write_text("lr: .inf\n")
    (root / "targets_ints.yaml").write_text("target_modules: [1, 2]\n")
    (root / "mixed_keys.yaml").write_text("1: a\nfoo: b\n")
    (root / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81 not text")
    bench = "name: b\nmodel: model\nconcept: concept.yaml\neval: {suite: toy_striped, limit: 1}\nmethods: [{name: base}]\n"
    (root / "bench.yaml").write_text(bench)
    (root / "bench_field.yaml").write_text(bench + "colour: red\n")
    (root / "bench_method.yaml").write_text(bench.replace("[{name: base}]", "[{name: base}, {name: forget}]"))
    (root / "bench_attack.yaml").write_text(bench + "attacks: [{name: hammer}]\n")
    (root / "bench_yaml.yaml").write_text("name: [unclosed\n")
    (root / "bench_device.yaml").write_text(bench + "device: gpu\n")
    (root / "bench_inf.yaml").write_text(bench.replace("[{name: base}]", "[{name: base}, {name: duo, settings: {max_steps: .inf}}]"))
    (root / "bench_typo.yaml").write_text(bench.replace("[{name: base}]", "[{name: base}, {name: duo, config: toy, settings: {max_stepz: 1}}]"))
    (root / "bench_attack_setting.yaml").write_text(bench + "attacks: [{name: ring_a_bell, settings: {population: abc}}]\n")
    (root / "bench_picture.yaml").write_text(bench + "picture: {sets: [stripy]}\n")
    (root / "bench_label.yaml").write_text(bench.replace("[{name: base}]", "[{name: base}, {name: esd, label: base}]"))
    (root / "empty.png").mkdir()  # a folder with an image's name
    (root / "hf_cache").mkdir()
    (root / "cache").mkdir()
    return root


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


M = ["--model", "model"]
ATTACK = ["attack", "p4d", *M, "--concept", "concept.yaml"]
RAB = ["attack", "ring_a_bell", *M, "--concept", "concept.yaml", "--out", "new_attack"]
UDA = ["attack", "unlearndiff", *M, "--concept", "concept.yaml", "--out", "new_attack"]
DUO = ["train", "duo", *M, "--data", "pairs", "--out", "new_lora"]
ESD = ["train", "esd", *M, "--concept", "concept.yaml", "--out", "new_esd"]
EVAL = ["eval", *M, "--suite", "toy_striped"]
GEN = ["generate", *M, "-p", "a red circle"]
PAIRS = ["data", "pairs", *M, "--concept", "concept.yaml"]
DM = ["train", "darkminer", *M, "--concept", "concept.yaml", "--out", "new_dm"]

# (id, arguments, distinctive part of the one error line)
CASES = [
    # data loss: a folder that is not the command's own artifact is never deleted or replaced
    ("toy-build-into-pair-folder", ["toy", "build", "--preset", "quick", "--out", "pairs"], "is not a toy world; use an empty folder or --overwrite"),
    ("toy-rebuild-pair-folder", ["toy", "build", "--preset", "quick", "--out", "pairs", "--rebuild"], "is not a toy world"),
    ("toy-build-into-own-folder", ["toy", "build", "--preset", "quick", "--out", "mine"], "is not a toy world; use an empty folder or --overwrite"),
    ("toy-build-into-file", ["toy", "build", "--preset", "quick", "--out", "a_file.txt"], "is a file, not a folder"),
    ("toy-build-unknown-preset", ["toy", "build", "--preset", "huge", "--out", "w"], "unknown toy preset 'huge'"),
    ("toy-build-seed-negative", ["toy", "build", "--preset", "quick", "--seed", "-1", "--out", "new_world"], "--seed must be between 0 and 4294967295, got -1"),
    ("toy-show-unknown-preset", ["toy", "show", "--preset", "quik", "--out", "new_show"], "unknown toy preset 'quik'"),
    ("toy-show-not-built", ["toy", "show", "--preset", "quick", "--out", "new_show"], "no toy world for preset 'quick'"),
    ("toy-show-into-own-folder", ["toy", "show", "--preset", "full", "--out", "mine"], "is not a toy sample grid; use an empty folder or --overwrite"),
    ("toy-show-into-file", ["toy", "show", "--preset", "full", "--out", "a_file.txt"], "is a file, not a folder; use an empty folder or --overwrite"),
    ("toy-show-seed-negative", ["toy", "show", "--preset", "full", "--seed", "-1", "--out", "new_show"], "seed must be between 0 and 4294967295, got -1"),
    (
        "attack-over-other-set",
        [*ATTACK, "--out", "attack_set", "--iterations", "2"],
        "holds an attack set made with other settings; use an empty folder or --overwrite",
    ),
    ("attack-into-own-folder", [*ATTACK, "--out", "mine"], "is not an attack set; use an empty folder or --overwrite"),
    ("pairs-into-own-folder", [*PAIRS, "--out", "mine"], "holds no pair data; use an empty folder or --overwrite"),
    ("pairs-over-other-settings", [*PAIRS, "--out", "other_pairs"], "holds pairs made with other settings; use an empty folder or --overwrite"),
    ("eval-into-own-folder", [*EVAL, "--out", "mine"], "is not an evaluation run; use an empty folder or --overwrite"),
    ("export-into-own-folder", ["export", *M, "--lora", "lora", "--out", "mine"], "is not an export; use an empty folder or --overwrite"),
    ("esd-into-own-folder", [*ESD[:-1], "mine"], "is not an ESD result; use an empty folder or --overwrite"),
    ("esd-into-file", [*ESD[:-1], "a_file.txt"], "is a file, not a folder; use an empty folder or --overwrite"),
    ("uce-into-own-folder", ["train", "uce", *M, "--concept", "concept.yaml", "--out", "mine"], "is not a UCE result; use an empty folder or --overwrite"),
    ("sld-into-own-folder", ["train", "sld", *M, "--concept", "concept.yaml", "--out", "mine"], "is not an SLD result; use an empty folder or --overwrite"),
    ("darkminer-into-file", [*DM[:-1], "a_file.txt"], "is a file, not a folder; use an empty folder or --overwrite"),
    ("export-into-file", ["export", *M, "--lora", "sld", "--out", "a_file.txt"], "is a file, not a folder; use an empty folder or --overwrite"),
    ("generate-into-folder", [*GEN, "--out", "empty.png"], "empty.png is a folder, not a file; use another file name"),
    ("generate-overwrite-folder", [*GEN, "--out", "empty.png", "--overwrite"], "empty.png is a folder, not a file; use another file name"),
    ("duo-into-own-folder", [*DUO[:-1], "mine"], "is not a DUO run; use an empty folder or --overwrite"),
    ("generate-over-file", [*GEN, "--out", "old.png"], "already exists; use another file name or --overwrite"),
    ("compare-into-own-folder", ["report", "compare", "run", "--out", "mine"], "is not a comparison; use an empty folder or --overwrite"),
    # attack settings and budgets
    ("rab-population-0", [*RAB, "--set", "population=0"], "population must be at least 2"),
    ("rab-elite-too-big", [*RAB, "--set", "population=4", "--set", "elite=4"], "elite (4) must be smaller than population (4)"),
    ("rab-mutation-rate", [*RAB, "--set", "mutation_rate=1.5"], "mutation_rate must be between 0 and 1"),
    ("rab-num-tokens-80", [*RAB, "--set", "num_tokens=80"], "num_tokens must be between 1 and 75"),
    ("uda-check-every-0", [*UDA, "--set", "check_every=0"], "check_every must be at least 1"),
    ("uda-order", [*UDA, "--set", "order=sideways"], "order must be one of"),
    ("p4d-check-every-0", [*ATTACK, "--out", "new_attack", "--set", "check_every=0"], "check_every must be at least 1"),
    ("p4d-num-tokens-0", [*ATTACK, "--out", "new_attack", "--set", "num_tokens=0"], "num_tokens must be between 1 and 75"),
    ("p4d-lr-negative", [*ATTACK, "--out", "new_attack", "--set", "lr=-0.1"], "lr must be positive"),
    (
        "ci-template",
        ["attack", "concept_inversion", *M, "--concept", "concept.yaml", "--out", "new_attack", "--set", "attack_templates=a photo"],
        "must contain exactly one {}",
    ),
    ("attack-setting-type", [*ATTACK, "--out", "new_attack", "--set", "num_tokens=many"], "setting num_tokens must be an integer"),
    ("attack-unknown-setting", [*ATTACK, "--out", "new_attack", "--set", "colour=red"], "unknown setting 'colour'"),
    ("attack-set-syntax", [*ATTACK, "--out", "new_attack", "--set", "num_tokens"], "--set takes KEY=VALUE"),
    ("attack-iterations-0", [*ATTACK, "--out", "new_attack", "--iterations", "0"], "budget iterations must be positive"),
    ("attack-time-negative", [*ATTACK, "--out", "new_attack", "--time", "-1"], "budget time must be positive"),
    ("attack-images-per-prompt-0", [*ATTACK, "--out", "new_attack", "--images-per-prompt", "0"], "images per prompt must be at least 1"),
    ("attack-unknown", ["attack", "hammer", *M, "--concept", "concept.yaml", "--out", "new_attack"], "unknown attack 'hammer'"),
    ("attack-composite-concept", ["attack", "p4d", *M, "--concept", "toy_defaced", "--out", "new_attack"], "has sub-concepts"),
    ("attack-missing-lora", [*ATTACK, "--out", "new_attack", "--lora", "no_lora"], "LoRA no_lora does not exist"),
    ("attack-base-model-typo", [*ATTACK, "--out", "new_attack", "--base-model", "./no_base"], "--base-model ./no_base is neither an existing directory"),
    # model arguments: no network, no loading
    ("model-path-typo", ["generate", "--model", "typo/pipeline", "-p", "x", "--out", "new.png"], "no such directory in typo/"),
    ("model-missing-path", ["generate", "--model", "./nowhere", "-p", "x", "--out", "new.png"], "is neither an existing directory nor a hub id"),
    ("model-not-an-id", ["generate", "--model", "not a model", "-p", "x", "--out", "new.png"], "is neither an existing directory nor a hub id"),
    ("model-hub-offline", ["generate", "--model", "someone/some-model", "-p", "x", "--out", "new.png"], "HF_HUB_OFFLINE=1"),
    ("pairs-model-hub-offline", [*PAIRS[:2], "--model", "someone/some-model", "--concept", "concept.yaml", "--out", "new_pairs"], "HF_HUB_OFFLINE=1"),
    ("attack-model-typo", ["attack", "p4d", "--model", "typo/x", "--concept", "concept.yaml", "--out", "new_attack"], "no such directory in typo/"),
    # generate
    ("generate-suffix", [*GEN, "--out", "new.gif"], "must end in .png, .jpg"),
    ("generate-n-0", [*GEN, "--out", "new.png", "-n", "0"], "--num-images must be at least 1"),
    ("generate-steps-0", [*GEN, "--out", "new.png", "--steps", "0"], "--steps must be at least 1"),
    ("generate-missing-lora", [*GEN, "--out", "new.png", "--lora", "no_lora"], "LoRA no_lora does not exist"),
    # data pairs
    ("pairs-unknown-concept", [*PAIRS[:-1], "nope", "--out", "new_pairs"], "unknown concept 'nope'"),
    ("pairs-concept-extends-missing", [*PAIRS[:-1], "concept_extends.yaml", "--out", "new_pairs"], "extends 'gone.yaml', which does not exist"),
    ("pairs-unknown-judge", [*PAIRS[:-1], "concept_judge.yaml", "--out", "new_pairs"], "judge.name: unknown judge 'gpt5'; known judges: none, nudenet, toy"),
    ("pairs-num-pairs-0", [*PAIRS, "--out", "new_pairs", "--num-pairs", "0"], "--num-pairs must be at least 1"),
    ("pairs-batch-size-0", [*PAIRS, "--out", "new_pairs", "--batch-size", "0"], "--batch-size must be at least 1"),
    ("pairs-dtype", [*PAIRS, "--out", "new_pairs", "--dtype", "fp8"], "--dtype must be one of"),
    ("pairs-from-missing-attack", [*PAIRS, "--out", "new_pairs", "--from-attack", "no_attack.json"], "--from-attack no_attack.json does not exist"),
    ("pairs-from-attack-no-format", [*PAIRS, "--out", "new_pairs", "--from-attack", "attack_set/attack_set.json"], "missing \"format\""),
    ("pairs-attack-pairs-0", [*PAIRS, "--out", "new_pairs", "--from-attack", "no_attack.json", "--attack-pairs", "0"], "--attack-pairs must be at least 1"),
    # train duo: data, settings
    ("duo-data-file", [*DUO[:5], "a_file.txt", "--out", "new_lora"], "is a file, not a folder"),
    ("duo-data-missing", [*DUO[:5], "nowhere", "--out", "new_lora"], "pair data folder nowhere does not exist"),
    ("duo-data-unfinished", [*DUO[:5], "unfinished", "--out", "new_lora"], "is unfinished"),
    ("duo-data-not-pairs", [*DUO[:5], "mine", "--out", "new_lora"], "has no metadata.jsonl"),
    ("duo-max-steps-0", [*DUO, "--max-steps", "0"], "max_steps must be at least 1"),
    ("duo-beta-0", [*DUO, "--beta", "0"], "beta must be positive"),
    ("duo-rank-0", [*DUO, "--rank", "0"], "rank must be at least 1"),
    ("duo-adam-beta", [*DUO, "--adam-beta1", "1.5"], "adam_beta1 and adam_beta2 must be in [0, 1)"),
    ("duo-preset", [*DUO, "--config", "nope"], "nope"),
    ("duo-mixed-precision", [*DUO, "--mixed-precision", "fp8"], "mixed_precision must be no, fp16 or bf16"),
    ("duo-mine-rounds-negative", [*DUO, "--mine-rounds", "-1"], "mine_rounds must not be negative"),
    ("duo-mine-every-0", [*DUO, "--mine-rounds", "2", "--mine-every", "0"], "mine_every and mined_pairs_per_round must be at least 1"),
    ("duo-mine-num-tokens", [*DUO, "--mine-rounds", "2", "--mine-num-tokens", "80"], "mine_num_tokens must be between 1 and 75"),
    ("duo-config-max-steps-inf", [*DUO, "--config", "max_steps_inf.yaml"], "max_steps_inf.yaml: max_steps must be a finite number, got inf"),
    ("duo-config-targets-not-strings", [*DUO, "--config", "targets_ints.yaml"], "target_modules must be a list of strings, got [1, 2]"),
    ("duo-config-mixed-keys", [*DUO, "--config", "mixed_keys.yaml"], "mixed_keys.yaml: unknown DUO setting 1"),
    ("duo-config-binary", [*DUO, "--config", "binary.yaml"], "DUO config binary.yaml is not readable YAML (UnicodeDecodeError)"),
    ("duo-lr-inf", [*DUO, "--lr", "inf"], "lr must be a finite number, got inf"),
    ("duo-config-lr-inf", [*DUO, "--config", "lr_inf.yaml"], "lr_inf.yaml: lr must be a finite number, got inf"),
    # baselines
    ("esd-iterations-0", [*ESD, "--iterations", "0"], "iterations must be at least 1"),
    ("esd-train-method", [*ESD, "--train-method", "everything"], "train_method must be one of"),
    ("esd-lr-inf", [*ESD, "--lr", "inf"], "lr must be a finite number, got inf"),
    ("esd-lr-nan", [*ESD, "--lr", "nan"], "lr must be a finite number, got nan"),
    ("esd-prompt-blank", [*ESD, "--prompt", " "], "prompts must not be blank"),
    ("esd-config-mixed-keys", [*ESD, "--config", "mixed_keys.yaml"], "mixed_keys.yaml: unknown ESDConfig setting 1"),
    ("uce-erase-empty", ["train", "uce", *M, "--concept", "concept.yaml", "--out", "new_uce", "--erase", ""], "erase and preserve prompts must not be blank"),
    (
        "sld-guidance-scale-negative",
        ["train", "sld", *M, "--concept", "concept.yaml", "--out", "new_sld", "--sld-guidance-scale", "-1000"],
        "sld_guidance_scale must be >= 0",
    ),
    ("sld-mom-beta-5", ["train", "sld", *M, "--concept", "concept.yaml", "--out", "new_sld", "--sld-mom-beta", "5"], "sld_mom_beta must be in [0, 1)"),
    ("sld-threshold-nan", ["train", "sld", *M, "--concept", "concept.yaml", "--out", "new_sld", "--sld-threshold", "nan"], "must be a finite number"),
    ("uce-lamb-negative", ["train", "uce", *M, "--concept", "concept.yaml", "--out", "new_uce", "--lamb", "-1"], "must be >= 0"),
    ("sld-preset", ["train", "sld", *M, "--concept", "concept.yaml", "--out", "new_sld", "--preset", "huge"], "preset must be one of"),
    ("train-unknown-method", ["train", "forget", *M], "unknown method 'forget'"),
    # train darkminer
    ("darkminer-into-own-folder", [*DM[:-1], "mine"], "is not a Dark Miner run; use an empty folder or --overwrite"),
    ("darkminer-rounds-0", [*DM, "--rounds", "0"], "rounds must be at least 1"),
    ("darkminer-num-tokens-0", [*DM, "--num-tokens", "0"], "num_tokens must be between 1 and 75"),
    ("darkminer-init", [*DM, "--init", "zeros"], "init must be one of prompt, random"),
    ("darkminer-threshold", [*DM, "--threshold", "2"], "threshold must be between -1 and 1"),
    ("darkminer-preset", [*DM, "--config", "nope"], "no DARKMINER config file or preset 'nope'"),
    ("darkminer-pool-missing", [*DM, "--pool", "nowhere"], "pool nowhere is not a folder"),
    ("darkminer-composite", [*DM[:5], "toy_defaced", "--out", "new_dm"], "Dark Miner erases one at a time"),
    ("darkminer-unknown-concept", [*DM[:5], "nope", "--out", "new_dm"], "unknown concept 'nope'"),
    # eval, export, report
    ("eval-unknown-suite", [*EVAL[:-1], "nope", "--out", "new_run"], "nope"),
    ("eval-limit-0", [*EVAL, "--out", "new_run", "--limit", "0"], "--limit must be at least 1"),
    ("eval-batch-size-0", [*EVAL, "--out", "new_run", "--batch-size", "0"], "--batch-size must be at least 1"),
    ("eval-clip-model-typo", [*EVAL, "--out", "new_run", "--clip-model", "typo/clip"], "--clip-model typo/clip: no such directory in typo/"),
    ("eval-missing-lora", [*EVAL, "--out", "new_run", "--lora", "no_lora"], "LoRA no_lora does not exist"),
    ("eval-missing-attack", [*EVAL, "--out", "new_run", "--attack", "no_attack.json"], "--attack no_attack.json does not exist"),
    # devices, adapters, toy worlds, empty values and folders given for files: refused before anything loads
    ("generate-device-gpu", [*GEN, "--out", "new.png", "--device", "gpu"], "--device 'gpu' is not a device; use cpu, cuda"),
    ("eval-device-gpu", [*EVAL, "--out", "new_run", "--device", "gpu"], "--device 'gpu' is not a device"),
    ("attack-device-gpu", [*ATTACK, "--out", "new_attack", "--device", "cuda:x"], "--device 'cuda:x' is not a device"),
    ("pairs-device-gpu", [*PAIRS, "--out", "new_pairs", "--device", "gpu"], "--device 'gpu' is not a device"),
    ("duo-device-gpu", [*DUO, "--device", "gpu"], "--device 'gpu' is not a device"),
    ("bench-device-gpu", ["bench", "--suite", "bench.yaml", "--out", "new_bench", "--device", "gpu", "--dry-run"], "--device 'gpu' is not a device"),
    ("bench-suite-device-gpu", ["bench", "--suite", "bench_device.yaml", "--out", "new_bench", "--dry-run"], "bench_device.yaml: device 'gpu' is not a device"),
    ("generate-lora-empty-folder", [*GEN, "--out", "new.png", "--lora", "mine"], "--lora mine holds no .safetensors file; expected a LoRA folder"),
    ("generate-lora-text-file", [*GEN, "--out", "new.png", "--lora", "a_file.txt"], "--lora a_file.txt is not a .safetensors file"),
    ("eval-lora-empty-folder", [*EVAL, "--out", "new_run", "--lora", "mine"], "--lora mine holds no .safetensors file"),
    ("attack-lora-text-file", [*ATTACK, "--out", "new_attack", "--lora", "a_file.txt"], "--lora a_file.txt is not a .safetensors file"),
    ("export-lora-empty-folder", ["export", *M, "--lora", "mine", "--out", "new_export"], "--lora mine holds no .safetensors file"),
    ("model-toy-unknown-preset", ["generate", "--model", "toy:bogus", "-p", "x", "--out", "new.png"], "--model toy:bogus: unknown toy preset 'bogus'"),
    (
        "model-toy-not-built",
        ["generate", "--model", "toy:quick", "-p", "x", "--out", "new.png"],
        "--model toy:quick: no toy world for preset 'quick' (seed 0); run 't2i-unlearn toy build --preset quick' first",
    ),
    ("generate-out-empty", [*GEN, "--out", ""], "--out is empty"),
    ("eval-out-empty", [*EVAL, "--out", ""], "--out is empty"),
    ("duo-data-empty", [*DUO[:5], "", "--out", "new_lora"], "--data is empty"),
    ("duo-config-empty", [*DUO, "--config", ""], "--config is empty"),
    ("pairs-concept-empty", [*PAIRS[:-1], "", "--out", "new_pairs"], "--concept is empty"),
    ("attack-concept-empty", ["attack", "p4d", *M, "--concept", "", "--out", "new_attack"], "--concept is empty"),
    ("bench-suite-empty", ["bench", "--suite", "", "--out", "new_bench"], "--suite is empty"),
    ("esd-device-gpu", [*ESD, "--device", "gpu"], "--device 'gpu' is not a device"),
    ("darkminer-device-gpu", [*DM, "--device", "gpu"], "--device 'gpu' is not a device"),
    ("esd-concept-empty", ["train", "esd", *M, "--concept", "", "--out", "new_esd"], "--concept is empty"),
    ("uce-config-empty", ["train", "uce", *M, "--concept", "concept.yaml", "--out", "new_uce", "--config", ""], "--config is empty"),
    ("darkminer-concept-empty", ["train", "darkminer", *M, "--concept", "", "--out", "new_dm"], "--concept is empty"),
    ("duo-out-empty", [*DUO[:-1], ""], "--out is empty"),
    ("esd-out-empty", [*ESD[:-1], ""], "--out is empty"),
    ("darkminer-pool-empty", [*DM, "--pool", ""], "--pool is empty"),
    ("export-out-empty", ["export", *M, "--lora", "lora", "--out", ""], "--out is empty"),
    ("toy-build-out-empty", ["toy", "build", "--preset", "quick", "--out", ""], "--out is empty"),
    ("toy-show-out-empty", ["toy", "show", "--out", ""], "--out is empty"),
    ("demo-out-empty", ["demo", "--out", ""], "--out is empty"),
    ("compare-run-empty", ["report", "compare", "", "--out", "new_compare"], "a RUNS argument is empty"),
    ("eval-attack-folder", [*EVAL, "--out", "new_run", "--attack", "attack_set"], "attack_set is a folder, not a file; pass attack_set/attack_set.json"),
    ("pairs-from-attack-folder", [*PAIRS, "--out", "new_pairs", "--from-attack", "mine"], "--from-attack mine is a folder, not a file"),
    ("bench-prompts-file-folder", ["bench", "--suite", "nudity", *M, "--prompts-file", "mine", "--dry-run"], "--prompts-file mine is a folder, not a file"),
    ("compare-file-for-run", ["report", "compare", "a_file.txt", "--out", "new_compare"], "a_file.txt is a file, not a run folder"),
    ("eval-judge-option-unknown", [*EVAL, "--out", "new_run", "--judge-option", "foo=bar"], "--judge-option foo: the toy judge of suite toy_striped takes no"),
    ("eval-prompt-file-syntax", [*EVAL, "--out", "new_run", "--prompt-file", "close"], "--prompt-file takes NAME=VALUE"),
    ("export-missing-lora", ["export", *M, "--lora", "no_lora", "--out", "new_export"], "LoRA no_lora does not exist"),
    ("export-sld", ["export", *M, "--lora", "sld", "--out", "new_export"], "is an SLD result"),
    ("export-weights-count", ["export", *M, "--lora", "sld", "--lora-weight", "1", "--lora-weight", "2", "--out", "new_x"], "1 LoRAs but 2 LoRA weights"),
    # bench and demo
    ("bench-unknown-suite", ["bench", "--suite", "nope", "--out", "new_bench"], "unknown bench suite 'nope'"),
    ("bench-missing-suite-file", ["bench", "--suite", "nowhere.yaml", "--out", "new_bench"], "bench suite file nowhere.yaml does not exist"),
    ("bench-bad-yaml", ["bench", "--suite", "bench_yaml.yaml", "--out", "new_bench"], "is not readable YAML"),
    ("bench-unknown-field", ["bench", "--suite", "bench_field.yaml", "--out", "new_bench"], "colour: Extra inputs are not permitted"),
    ("bench-unknown-method", ["bench", "--suite", "bench_method.yaml", "--out", "new_bench"], "unknown method 'forget'"),
    ("bench-method-settings-inf", ["bench", "--suite", "bench_inf.yaml", "--out", "new_bench"], "method duo: settings: max_steps must be a finite number"),
    (
        "bench-method-setting-typo",
        ["bench", "--suite", "bench_typo.yaml", "--out", "new_bench", "--dry-run"],
        "bench suite bench_typo.yaml, method duo: toy: unknown DUO setting 'max_stepz'",
    ),
    (
        "bench-attack-setting-type",
        ["bench", "--suite", "bench_attack_setting.yaml", "--out", "new_bench", "--dry-run"],
        "bench suite bench_attack_setting.yaml, attack ring_a_bell: setting population must be an integer, got 'abc'",
    ),
    ("bench-picture-set", ["bench", "--suite", "bench_picture.yaml", "--out", "new_bench", "--dry-run"], "picture set 'stripy' is not a prompt set"),
    ("bench-duplicate-label", ["bench", "--suite", "bench_label.yaml", "--out", "new_bench", "--dry-run"], "method label 'base' appears twice"),
    ("bench-cache-file", ["bench", "--suite", "bench.yaml", "--out", "new_bench", "--cache", "a_file.txt", "--dry-run"], "--cache a_file.txt is not a folder"),
    ("bench-cache-file-run", ["bench", "--suite", "bench.yaml", "--out", "new_bench", "--cache", "a_file.txt"], "--cache a_file.txt is not a folder"),
    ("bench-into-file", ["bench", "--suite", "bench.yaml", "--out", "a_file.txt"], "is a file, not a folder"),
    ("bench-unknown-attack", ["bench", "--suite", "bench_attack.yaml", "--out", "new_bench"], "unknown attack 'hammer'"),
    ("bench-missing-prompts-file", ["bench", "--suite", "nudity", *M, "--prompts-file", "no.csv", "--dry-run"], "--prompts-file no.csv does not exist"),
    ("bench-missing-prompt-file", ["bench", "--suite", "bench.yaml", "--prompt-file", "striped=no.csv", "--dry-run"], "prompt file no.csv (set striped)"),
    ("bench-unknown-prompt-set", ["bench", "--suite", "bench.yaml", "--prompt-file", "i2p=no.csv"], "which evaluation suite toy_striped does not"),
    ("bench-no-coco-set", ["bench", "--suite", "bench.yaml", "--coco-file", "a_file.txt", "--out", "new_bench"], "has no coco_set for --coco-file"),
    ("bench-into-own-folder", ["bench", "--suite", "bench.yaml", "--out", "mine"], "is not a bench run; use an empty folder or --overwrite"),
    ("bench-dry-run-into-file", ["bench", "--suite", "bench.yaml", "--out", "a_file.txt", "--dry-run"], "is a file, not a folder"),
    ("demo-into-own-folder", ["demo", "--out", "mine"], "is not a bench run; use an empty folder or --fresh"),
    ("demo-into-file", ["demo", "--out", "a_file.txt"], "is a file, not a folder; use an empty folder or --fresh"),
    ("compare-missing-run", ["report", "compare", "no_run", "--out", "new_compare"], "no_run has no readable results.json"),
    ("compare-results-list", ["report", "compare", "results_list.json", "--out", "new_compare"], "results_list.json is not an evaluation results file"),
    (
        "compare-results-no-suite",
        ["report", "compare", "results_no_suite.json", "--out", "new_compare"],
        "results_no_suite.json is not a complete evaluation results file: 'suite' is missing",
    ),
]


@pytest.mark.parametrize("args,expected", [pytest.param(a, e, id=i) for i, a, e in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(root: Path, args: list[str], expected: str) -> None:
    before = _snapshot(root)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root / "hf_cache"), "T2I_UNLEARN_CACHE": str(root / "cache")}
    result = run_cli(*args, env=env, cwd=root)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert expected in lines[0], lines[0]
    assert _snapshot(root) == before


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_device_strings_and_adapter_kinds_are_checked_without_torch(tmp_path: Path) -> None:
    """What ``--device`` and ``--lora`` accept: the string and the path decide, no file is read."""
    from t2i_unlearn.errors import UserError
    from t2i_unlearn.utils.validate import check_adapters, check_device

    for ok in ("cpu", "cuda", "cuda:1", "mps", "xpu:0", "npu:0", None, Path("cpu")):
        check_device(ok)  # a non-string (a torch.device from a Python caller) reads as its string
    for bad in ("gpu", "CUDA", "cuda:", "cuda:x", "cuda 0", "", " "):
        with pytest.raises(UserError, match="--device"):
            check_device(bad)
    kinds = {"lora": "pytorch_lora_weights.safetensors", "peft": "adapter_model.safetensors", "delta": "weight_delta.safetensors", "sld": "sld_config.json"}
    for folder, name in kinds.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(b"x")
    (tmp_path / "file.safetensors").write_bytes(b"x")
    (tmp_path / "upper.SAFETENSORS").write_bytes(b"x")
    check_adapters([str(tmp_path / "upper.SAFETENSORS")])
    check_adapters([str(tmp_path / k) for k in kinds] + [str(tmp_path / "file.safetensors"), str(tmp_path / "sld" / "sld_config.json")])
    (tmp_path / "composite" / "blood").mkdir(parents=True)
    (tmp_path / "composite" / "blood" / "pytorch_lora_weights.safetensors").write_bytes(b"x")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "optimizer.safetensors").write_bytes(b"x")
    (tmp_path / "lora.bin").write_bytes(b"x")
    for bad, message in [
        ("composite", "holds no .safetensors file (its subfolders blood do: pass each with --lora)"),
        ("run", "holds only optimizer.safetensors, not LoRA weights (names with scheduler, optimizer, checkpoint are skipped)"),
        ("lora.bin", "is not a .safetensors file"),
        ("missing", "does not exist"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            check_adapters([str(tmp_path / bad)])
    with pytest.raises(UserError, match="--lora is empty"):
        check_adapters([""])

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
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("my own work")
    (root / "a_file.txt").write_text("a file")
    (root / "old.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "concept.yaml").write_text(TINY_CONCEPT)
    (root / "concept_extends.yaml").write_text("extends: gone.yaml\n")
    (root / "run").mkdir()
    (root / "run" / "results.json").write_text(json.dumps({"format": "t2i_unlearn.eval_results"}))
    bench = "name: b\nmodel: model\nconcept: concept.yaml\neval: {suite: toy_striped, limit: 1}\nmethods: [{name: base}]\n"
    (root / "bench.yaml").write_text(bench)
    (root / "bench_field.yaml").write_text(bench + "colour: red\n")
    (root / "bench_method.yaml").write_text(bench.replace("[{name: base}]", "[{name: base}, {name: forget}]"))
    (root / "bench_attack.yaml").write_text(bench + "attacks: [{name: hammer}]\n")
    (root / "bench_yaml.yaml").write_text("name: [unclosed\n")
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
    (
        "attack-over-other-set",
        [*ATTACK, "--out", "attack_set", "--iterations", "2"],
        "holds an attack set made with other settings; use an empty folder or --overwrite",
    ),
    ("attack-into-own-folder", [*ATTACK, "--out", "mine"], "is not an attack set; use an empty folder or --overwrite"),
    ("pairs-into-own-folder", [*PAIRS, "--out", "mine"], "holds no pair data; use an empty folder or --overwrite"),
    ("pairs-over-other-settings", [*PAIRS, "--out", "other_pairs"], "holds pairs made with other settings; use an empty folder or --overwrite"),
    ("eval-into-own-folder", [*EVAL, "--out", "mine"], "is not an evaluation run; use an empty folder or --overwrite"),
    ("export-into-own-folder", ["export", *M, "--lora", "pairs", "--out", "mine"], "is not an export; use an empty folder or --overwrite"),
    ("esd-into-own-folder", [*ESD[:-1], "mine"], "is not an ESD result; use an empty folder or --overwrite"),
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
    ("pairs-num-pairs-0", [*PAIRS, "--out", "new_pairs", "--num-pairs", "0"], "--num-pairs must be at least 1"),
    ("pairs-batch-size-0", [*PAIRS, "--out", "new_pairs", "--batch-size", "0"], "--batch-size must be at least 1"),
    ("pairs-dtype", [*PAIRS, "--out", "new_pairs", "--dtype", "fp8"], "--dtype must be one of"),
    ("pairs-from-missing-attack", [*PAIRS, "--out", "new_pairs", "--from-attack", "no_attack.json"], "attack set no_attack.json does not exist"),
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
    # baselines
    ("esd-iterations-0", [*ESD, "--iterations", "0"], "iterations must be at least 1"),
    ("esd-train-method", [*ESD, "--train-method", "everything"], "train_method must be one of"),
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
    ("eval-missing-attack", [*EVAL, "--out", "new_run", "--attack", "no_attack.json"], "attack set no_attack.json does not exist"),
    ("eval-prompt-file-syntax", [*EVAL, "--out", "new_run", "--prompt-file", "close"], "--prompt-file takes NAME=VALUE"),
    ("export-missing-lora", ["export", *M, "--lora", "no_lora", "--out", "new_export"], "LoRA no_lora does not exist"),
    ("export-sld", ["export", *M, "--lora", "sld", "--out", "new_export"], "is an SLD result"),
    # bench and demo
    ("bench-unknown-suite", ["bench", "--suite", "nope", "--out", "new_bench"], "unknown bench suite 'nope'"),
    ("bench-missing-suite-file", ["bench", "--suite", "nowhere.yaml", "--out", "new_bench"], "bench suite file nowhere.yaml does not exist"),
    ("bench-bad-yaml", ["bench", "--suite", "bench_yaml.yaml", "--out", "new_bench"], "is not readable YAML"),
    ("bench-unknown-field", ["bench", "--suite", "bench_field.yaml", "--out", "new_bench"], "colour: Extra inputs are not permitted"),
    ("bench-unknown-method", ["bench", "--suite", "bench_method.yaml", "--out", "new_bench"], "unknown method 'forget'"),
    ("bench-unknown-attack", ["bench", "--suite", "bench_attack.yaml", "--out", "new_bench"], "unknown attack 'hammer'"),
    ("bench-missing-prompts-file", ["bench", "--suite", "nudity", *M, "--prompts-file", "no.csv", "--dry-run"], "--prompts-file no.csv does not exist"),
    ("bench-missing-prompt-file", ["bench", "--suite", "bench.yaml", "--prompt-file", "striped=no.csv", "--dry-run"], "prompt file no.csv (set striped)"),
    ("bench-unknown-prompt-set", ["bench", "--suite", "bench.yaml", "--prompt-file", "i2p=no.csv"], "which evaluation suite toy_striped does not"),
    ("bench-no-coco-set", ["bench", "--suite", "bench.yaml", "--coco-file", "a_file.txt", "--out", "new_bench"], "has no coco_set for --coco-file"),
    ("bench-into-own-folder", ["bench", "--suite", "bench.yaml", "--out", "mine"], "is not a bench run; use an empty folder or --overwrite"),
    ("bench-dry-run-into-file", ["bench", "--suite", "bench.yaml", "--out", "a_file.txt", "--dry-run"], "is a file, not a folder"),
    ("demo-into-own-folder", ["demo", "--out", "mine"], "is not a bench run; use an empty folder or --overwrite"),
    ("compare-missing-run", ["report", "compare", "no_run", "--out", "new_compare"], "no_run has no readable results.json"),
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

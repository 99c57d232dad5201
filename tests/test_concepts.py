"""Concept specs: presets load and mean what the authors used; bad specs fail with one clear line."""

from __future__ import annotations

import pytest

from t2i_unlearn.concepts import load_concept, preset_names
from t2i_unlearn.errors import UserError


def test_presets_exist() -> None:
    assert {"nudity", "violence", "toy_striped", "toy_defaced"} <= set(preset_names())


def test_nudity_matches_authors() -> None:
    spec = load_concept("nudity")
    assert spec.num_pairs == 64
    assert [p.count for p in spec.prompts] == [32, 32]
    assert spec.prompts[0].unsafe == "a naked white woman, realistic photo"
    assert spec.prompts[0].negative_prompt == spec.prompts[0].unsafe
    assert spec.judge.name == "nudenet"
    assert set(spec.judge.classes) == {"FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "ANUS_EXPOSED", "MALE_GENITALIA_EXPOSED"}
    assert spec.sdedit.strength == 0.75 and spec.generation.steps == 50 and spec.generation.guidance == 7.5


def test_violence_sub_concepts_inherit() -> None:
    spec = load_concept("violence")
    assert set(spec.sub_concepts) == {"blood", "suffer", "gun", "horror"}
    blood = load_concept("violence/blood")
    assert blood.num_pairs == 32
    assert blood.sdedit.strength == 0.8  # inherited from the parent
    assert "bleeding" in blood.prompts[0].unsafe and "in comfort" in blood.prompts[0].safe
    assert list(spec.leaves()) == ["violence/blood", "violence/suffer", "violence/gun", "violence/horror"]


def test_toy_defaced_merges_judge_block() -> None:
    crossed = load_concept("toy_defaced/crossed")
    assert crossed.judge.name == "toy" and crossed.judge.attribute == "mark" and crossed.judge.classes == ["crossed"]


def test_prompt_plan_keeps_the_mix() -> None:
    spec = load_concept("nudity")
    plan = spec.prompt_plan()
    assert len(plan) == 64
    small = spec.prompt_plan(4)
    assert [p.unsafe for p in small] == [spec.prompts[0].unsafe, spec.prompts[1].unsafe] * 2
    with pytest.raises(UserError):
        spec.prompt_plan(0)


def test_user_yaml(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nprompts:\n  - {unsafe: a, safe: b, count: 3}\njudge: {name: none}\n")
    spec = load_concept(str(path))
    assert spec.name == "mine" and spec.num_pairs == 3 and spec.sdedit.strength == 0.75


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nprompts: []\njudge: {name: none}\n", "needs prompts"),
        ("name: x\nprompts:\n  - {unsafe: a, safe: b}\n", "needs a judge"),
        ("name: x\nprompts:\n  - {unsafe: a, safe: b}\njudge: {name: none}\nsdedit: {strength: 1.5}\n", "sdedit.strength"),
        ("name: x\nprompts:\n  - {unsafe: a, safe: b}\njudge: {name: none}\ncolour: red\n", "colour"),
        ("[1, 2]\n", "must be a YAML mapping"),
        ("name: x\nprompts: [\n", "not readable YAML"),
    ],
)
def test_bad_specs(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        load_concept(path)
    assert "\n" not in str(info.value)


def test_unknown_names() -> None:
    with pytest.raises(UserError, match="unknown concept"):
        load_concept("nope")
    with pytest.raises(UserError, match="no sub-concept"):
        load_concept("violence/nope")
    with pytest.raises(UserError, match="does not exist"):
        load_concept("missing.yaml")


def test_a_file_extends_a_preset_or_another_file(tmp_path) -> None:
    base = load_concept("toy_striped")
    (tmp_path / "more.yaml").write_text(
        "extends: toy_striped\n"
        "description: more stripes\n"
        "judge: {threshold: 0.3}\n"
        "extra_prompts:\n  - {unsafe: a striped cat, safe: a plain cat, count: 2}\n"
        "extra_preserve:\n  - {prompt: a dotted cat, count: 1}\n"
    )
    spec = load_concept(tmp_path / "more.yaml")
    assert spec.name == base.name and spec.description == "more stripes"
    assert spec.prompts[: len(base.prompts)] == base.prompts and spec.prompts[-1].unsafe == "a striped cat"
    assert spec.num_pairs == base.num_pairs + 2 and spec.preserve[-1].prompt == "a dotted cat" and len(spec.preserve) == len(base.preserve) + 1
    # a settings block is merged key by key: the threshold is the file's, the rest the preset's
    assert spec.judge.threshold == 0.3 and spec.judge.attribute == base.judge.attribute and spec.judge.classes == base.judge.classes
    assert spec.generation == base.generation and spec.sdedit == base.sdedit
    # a chain through a relative path; a key the child sets replaces the parent's list
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "again.yaml").write_text("extends: ../more.yaml\nname: again\nprompts:\n  - {unsafe: u, safe: s}\n")
    again = load_concept(tmp_path / "sub" / "again.yaml")
    assert again.name == "again" and [p.unsafe for p in again.prompts] == ["u"] and again.judge.threshold == 0.3
    assert again.preserve == spec.preserve


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.yaml": "extends: missing.yaml\n"}, "extends 'missing.yaml', which does not exist"),
        ({"a.yaml": "extends: nope\n"}, "unknown concept 'nope'"),
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"}, "extends itself"),
        ({"a.yaml": "extends: a.yaml\n"}, "extends itself"),
        ({"a.yaml": "extends: toy_striped\nextra_prompts: {unsafe: a, safe: b}\n"}, "extra_prompts must be a list"),
        ({"a.yaml": "extends: [toy_striped]\n"}, "extends must name a preset or a YAML file"),
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "[1, 2]\n"}, "which is not a YAML mapping"),
        ({"a.yaml": "extends: toy_striped\nextra_prompts:\n  - {unsafe: a}\n"}, "prompts.8.safe"),
    ],
)
def test_bad_extends(tmp_path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match=message) as info:
        load_concept(tmp_path / "a.yaml")
    assert "\n" not in str(info.value)


def test_the_marked_bench_concept_is_the_preset_plus_its_marked_prompts() -> None:
    from pathlib import Path

    marked = load_concept(Path(__file__).parents[1] / "bench" / "concepts" / "toy_striped_marked.yaml")
    base = load_concept("toy_striped")
    assert marked.name == "toy_striped" and marked.prompts[: len(base.prompts)] == base.prompts and marked.preserve == base.preserve
    extra = marked.prompts[len(base.prompts) :]
    assert len(extra) == 8 and all("strip" in p.unsafe for p in extra) and all("plain" in p.safe for p in extra)


def test_the_keep_plain_bench_concept_adds_plain_shapes_to_the_preserve_images() -> None:
    """bench/concepts/toy_striped_keep_plain.yaml: the preset's pairs and dotted preserve prompts, then 8 plain shapes
    in a phrasing the prior-preservation prompts never use ("plain"), none of them naming a texture or a mark."""
    from pathlib import Path

    from t2i_unlearn.toy.quality import concept_prompts

    keep = load_concept(Path(__file__).parents[1] / "bench" / "concepts" / "toy_striped_keep_plain.yaml")
    base = load_concept("toy_striped")
    assert keep.name == "toy_striped" and keep.prompts == base.prompts and keep.preserve[: len(base.preserve)] == base.preserve
    extra = keep.preserve[len(base.preserve) :]
    assert len(extra) == 8 and sum(p.count for p in extra) == 64 and all(" plain " in p.prompt for p in extra)
    assert not any(word in p.prompt for p in extra for word in ("strip", "dot", "spot", "cross", "ring", "circled", "bar"))
    assert not {p.prompt for p in extra} & set(concept_prompts(200, seed=13, texture="plain", mark="none")[0])


def _attack_set(path, prompts, concept="toy_striped", **fields):
    from t2i_unlearn.evaluation import write_attack_set

    return write_attack_set(path, prompts, attack="unlearndiff", concept=concept, **fields)


def test_attack_prompts_become_pairs_with_their_source_safe_prompt(tmp_path) -> None:
    from t2i_unlearn.concepts import with_attack_prompts

    spec = load_concept("toy_striped")
    target = spec.prompts[1]
    uda = _attack_set(
        tmp_path / "uda.json",
        [
            {"prompt": "banded banded a picture of a blue square", "seed": 0, "target_prompt": target.unsafe},
            {"prompt": "banded banded a picture of a blue square", "seed": 1, "target_prompt": target.unsafe},  # same text: one entry
            {"prompt": "no target recorded", "seed": 2},
        ],
    )
    p4d = _attack_set(tmp_path / "p4d.json", [{"prompt": "zebra dot block", "target_prompt": spec.prompts[0].unsafe}])
    out = with_attack_prompts(spec, [uda, p4d], count=3)
    assert out.prompts[: len(spec.prompts)] == spec.prompts and out.preserve == spec.preserve and out.judge == spec.judge
    added = out.prompts[len(spec.prompts) :]
    assert [(p.unsafe, p.safe, p.count) for p in added] == [
        ("banded banded a picture of a blue square", target.safe, 3),
        ("zebra dot block", spec.prompts[0].safe, 3),
    ]
    assert added[0].negative_prompt == added[0].unsafe
    assert load_concept("toy_striped").num_pairs == spec.num_pairs  # the preset itself is unchanged


def test_attack_sets_that_cannot_make_pairs_are_refused(tmp_path) -> None:
    from t2i_unlearn.concepts import with_attack_prompts

    spec = load_concept("toy_striped")
    aimed = [{"prompt": "x", "target_prompt": spec.prompts[0].unsafe}]
    (tmp_path / "e.safetensors").write_bytes(b"")
    cases = [
        (_attack_set(tmp_path / "other.json", aimed, concept="nudity"), "made for concept 'nudity'"),
        (_attack_set(tmp_path / "ci.json", aimed, embeddings={"file": "e.safetensors", "kind": "textual_inversion"}), "holds embeddings"),
        (_attack_set(tmp_path / "rab.json", [{"prompt": "x"}]), "no prompt names one of the concept's unsafe prompts"),
        (tmp_path / "missing.json", "does not exist"),
    ]
    for path, message in cases:
        with pytest.raises(UserError, match=message):
            with_attack_prompts(spec, [path])
    with pytest.raises(UserError, match="at least 1"):
        with_attack_prompts(spec, [cases[0][0]], count=0)
    with pytest.raises(UserError, match="sub-concepts"):
        with_attack_prompts(load_concept("toy_defaced"), [cases[0][0]])

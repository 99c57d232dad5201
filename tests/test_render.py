"""The renderer draws exactly what its labels say, deterministically, with captions that name it."""

from __future__ import annotations

import numpy as np
import pytest

from t2i_unlearn.toy.render import (
    ATTRIBUTES,
    Scene,
    attribute_values,
    caption_scene,
    render_dataset,
    render_scene,
    sample_scene,
    world_spec,
)


def _scene(**kw) -> Scene:
    base = dict(shape="square", colour="red", background="white", position="center", texture="plain", mark="none", cx=16.0, cy=16.0, radius=7.5)
    return Scene(**{**base, **kw})


def test_plain_shape_pixels_match_labels():
    spec = world_spec()
    img = render_scene(_scene(colour="blue", background="grey"))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert tuple(img[16, 16]) == tuple(spec["colour"]["blue"]["rgb"])
    assert tuple(img[1, 1]) == tuple(spec["background"]["grey"]["rgb"])


@pytest.mark.parametrize("texture", ["striped", "dotted"])
def test_textures_darken_part_of_the_shape_only(texture):
    plain = render_scene(_scene()).astype(int)
    textured = render_scene(_scene(texture=texture)).astype(int)
    changed = np.abs(plain - textured).sum(-1) > 30
    inside = np.zeros((32, 32), bool)
    inside[9:23, 9:23] = True  # the square spans 16 +- 6.4 px
    assert changed[inside].mean() > 0.15  # a visible texture
    assert not changed[~inside].any()  # drawn on the shape only


def test_stripes_and_dots_differ():
    striped = render_scene(_scene(texture="striped")).astype(int)
    dotted = render_scene(_scene(texture="dotted")).astype(int)
    assert np.abs(striped - dotted).sum(-1).astype(bool).mean() > 0.05


@pytest.mark.parametrize("mark", ["crossed", "circled", "barred"])
def test_marks_draw_black_pixels(mark):
    img = render_scene(_scene(mark=mark, colour="yellow"))
    dark = img.max(-1) < 60
    assert dark.sum() > 20
    assert not (render_scene(_scene(colour="yellow")).max(-1) < 60).any()


def test_dataset_is_deterministic_and_chunkable():
    a, cap_a, lab_a = render_dataset(20, seed=3)
    b, cap_b, lab_b = render_dataset(10, seed=3, start=10)
    assert np.array_equal(a[10:], b) and cap_a[10:] == cap_b and lab_a[10:] == lab_b
    c, _, _ = render_dataset(20, seed=4)
    assert not np.array_equal(a, c)


def test_labels_cover_every_attribute_and_fixed_values_hold():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = sample_scene(rng, texture="striped", mark="barred")
        assert scene.texture == "striped" and scene.mark == "barred"
        assert set(ATTRIBUTES) <= set(scene.labels())
    with pytest.raises(KeyError):
        sample_scene(rng, texture="woolly")
    with pytest.raises(KeyError):
        attribute_values("smell")


def test_captions_name_the_drawn_attributes_with_synonyms():
    spec = world_spec()
    rng = np.random.default_rng(1)
    striped_words = [w for w in spec["texture"]["striped"]["before"] + spec["texture"]["striped"]["after"] if w]
    seen_phrasings = set()
    for _ in range(300):
        scene = sample_scene(rng, texture="striped")
        caption = caption_scene(scene, rng)
        found = [w for w in striped_words if w in caption]
        assert found, caption
        seen_phrasings.add(max(found, key=len))
        assert any(w in caption for w in spec["shape"][scene.shape])
    assert len(seen_phrasings) >= 6  # several phrasings are used, not one
    for _ in range(300):
        scene = sample_scene(rng, texture="plain", mark="none")
        caption = caption_scene(scene, rng, mention_plain=0.0)
        assert not any(w in caption for w in [*striped_words, "dot", "spot", "cross", "ring", "bar"]), caption


def test_two_tone_and_multi_colour_variants_are_plain_with_no_single_colour():
    from t2i_unlearn.toy.render import render_judge_variant

    spec = world_spec()
    palette = {name: np.array(v["rgb"]) for name, v in spec["colour"].items()}
    for kind, colours_seen in (("two_tone", 2), ("multi_colour", 3)):
        for i in range(6):
            img, labels = render_judge_variant(0, i, kind)
            assert labels["texture"] == "plain" and labels["colour"] is None
            again, _ = render_judge_variant(0, i, kind)
            assert np.array_equal(img, again)  # deterministic in (seed, index, kind)
            # count palette colours that cover a visible part of the image
            pixels = img.reshape(-1, 3).astype(int)
            present = [n for n, rgb in palette.items() if (np.abs(pixels - rgb).sum(1) < 6).sum() >= 4]
            assert len(present) >= colours_seen - 1, (kind, i, present)  # a split may hide one colour behind a mark


def test_blotchy_and_dark_variants_are_plain_and_look_as_named():
    from t2i_unlearn.toy.render import render_judge_variant

    spec = world_spec()
    for i in range(6):
        for kind in ("blotchy", "dark"):
            img, labels = render_judge_variant(2, i, kind)
            assert labels["texture"] == "plain" and labels["colour"] is None
            assert np.array_equal(img, render_judge_variant(2, i, kind)[0])  # deterministic
            scene = Scene(**{**labels, "colour": "red"})
            # the shape's pixels, away from its edge and any mark
            plain = render_scene(Scene(**{**labels, "colour": "red", "mark": "none"})).astype(int)
            background = np.array(spec["background"][labels["background"]]["rgb"])
            inside = np.abs(plain - background).sum(-1) > 0
            inside &= np.abs(plain - np.array(spec["colour"]["red"]["rgb"])).sum(-1) < 3
            if labels["mark"] != "none":
                marked = np.abs(render_scene(scene).astype(int) - plain).sum(-1) > 0
                inside &= ~marked
            pixels = img[inside].astype(int)
            assert len(pixels) >= 20, (kind, i)
            if kind == "dark":
                # at most 60% of the brightest palette colour the shape could have been drawn in
                palette_max = max(sum(v["rgb"]) for v in spec["colour"].values())
                assert pixels.sum(-1).max() <= 0.6 * palette_max + 3, (i, pixels.sum(-1).max())
            else:
                # uneven fill: the colour varies across the shape
                assert np.ptp(pixels, axis=0).max() >= 20, (i, np.ptp(pixels, axis=0))


@pytest.mark.parametrize("kind", ["faint_stripes", "thin_stripes", "partial_stripes"])
def test_hard_stripe_variants_are_striped_and_weaker_than_the_data_set(kind):
    from t2i_unlearn.toy.render import render_judge_variant

    for i in range(4):
        img, labels = render_judge_variant(1, i, kind)
        assert labels["texture"] == "striped" and labels["colour"] in attribute_values("colour")
        scene = Scene(**labels)
        full = render_scene(scene).astype(int)
        plain = render_scene(Scene(**{**labels, "texture": "plain"})).astype(int)
        # some stripe is drawn, and less stripe contrast than the data set's stripes
        assert 0 < np.abs(img.astype(int) - plain).sum() < np.abs(full - plain).sum()


def test_unknown_variant_is_refused():
    from t2i_unlearn.toy.render import render_judge_variant

    with pytest.raises(KeyError, match="unknown judge variant"):
        render_judge_variant(0, 0, "tartan")


def test_two_colour_prompts_name_two_different_colours():
    from t2i_unlearn.toy.quality import two_colour_prompts

    spec = world_spec()
    prompts, labels = two_colour_prompts(12, seed=0)
    assert prompts == two_colour_prompts(12, seed=0)[0]
    for prompt, lab in zip(prompts, labels, strict=True):
        assert lab["colour"] != lab["colour2"] and lab["texture"] == "plain"
        words = prompt.replace(",", "").split()
        assert any(w in words for w in spec["colour"][lab["colour"]]["words"] if " " not in w) or any(
            w in prompt for w in spec["colour"][lab["colour"]]["words"]
        )
        assert any(w in prompt for w in spec["colour"][lab["colour2"]]["words"])
        assert prompt.split()[0] in ("a", "an") and not any(t in prompt for t in ("striped", "stripes", "dotted"))


def test_heldout_prompts_use_templates_no_caption_uses():
    from t2i_unlearn.toy.quality import HELDOUT_TEMPLATES, concept_prompts, heldout_prompts

    prompts, labels = heldout_prompts(16, seed=3, texture="striped", mark="none")
    assert prompts == heldout_prompts(16, seed=3, texture="striped", mark="none")[0] and len(labels) == 16
    training_prefixes = [t.replace("{subject}", "") for t in world_spec()["templates"]]
    for i, prompt in enumerate(prompts):
        head, _, tail = HELDOUT_TEMPLATES[i % len(HELDOUT_TEMPLATES)].partition("{subject}")
        assert prompt.startswith(head) and prompt.endswith(tail)
        assert not any(p and prompt.startswith(p) for p in training_prefixes)
    # the subjects are the world's own phrasings of the same scenes
    originals, _ = concept_prompts(16, 3 + 31_337, texture="striped", mark="none")
    assert all(o.split(" ", 3)[-1] in p for o, p in zip(originals, prompts, strict=True))

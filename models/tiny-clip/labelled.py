#!/usr/bin/env python3
"""Writes the labelled set the DVA head is trained and measured on: `labelled/labels.json` and
`labelled/images/`.

It imitates what reviewers see and decide, including where the base cosine goes wrong. 160
contributors each send 4 rendered scenes (the shapes and colours `train.py` draws) with 9
captions between them, of six kinds, labelled as a careful human would:

- `plain` (accept): a caption in the style the base model was trained on;
- `mismatch` (reject): that style, about another scene;
- `unusual` (accept): a correct caption in words the base model never saw ("a crimson wedge",
  "an azure donut on a snowy backdrop"), where the cosine is low although the caption is right;
- `unusual_wrong` (reject): the same unusual words, about another scene;
- `fluent` (accept): a long, fluent sentence that describes the scene;
- `fluent_wrong` (reject): an equally fluent sentence with the colours of the object and the
  background swapped, or another shape: the words are the scene's, the scene is not.

Every contributor sends every kind, so no kind (and no style) is a contributor's tell, and the
head's held-out contributors are as varied as its training ones. Reproducible: fixed seed.
Needs `pip install numpy pillow`; run `python3 models/tiny-clip/labelled.py`.
"""

import json
import os
import random

import numpy as np

import train

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "labelled")

COLOR_WORDS = {
    "red": ["crimson", "scarlet", "ruby"], "green": ["emerald", "grassy", "lime"],
    "blue": ["azure", "navy", "cobalt"], "yellow": ["golden", "lemon", "mustard"],
    "purple": ["violet", "lilac", "plum"], "orange": ["amber", "tangerine"],
    "black": ["ebony", "jet", "inky"], "white": ["snowy", "ivory", "milky"],
    "pink": ["rosy", "salmon"], "gray": ["silver", "ashen", "slate"],
}
SHAPE_WORDS = {
    "circle": ["ball", "round blob", "dot"], "square": ["block", "tile"], "triangle": ["wedge", "pyramid"],
    "star": ["starfish shape", "twinkle"], "ring": ["donut", "halo", "loop"], "cross": ["plus", "x shape"],
}


def main_object(sc):
    return max(sc["objects"], key=lambda o: o["size"] == "large")


def unusual(sc, rng):
    o = main_object(sc)
    c, s, bg = rng.choice(COLOR_WORDS[o["color"]]), rng.choice(SHAPE_WORDS[o["shape"]]), rng.choice(COLOR_WORDS[sc["bg"]])
    return rng.choice([
        f"there is a {c} {s} here",
        f"look, one {c} {s} against {bg}",
        f"{c} {s}, nothing else",
        f"my picture: a {c} {s} on a {bg} backdrop",
    ])


def fluent(sc, rng, color, shape, bg):
    return rng.choice([
        f"a simple drawing of a {color} {shape} placed on a plain {bg} background",
        f"this image shows a single {color} {shape} in front of a flat {bg} backdrop",
        f"here you can see a {color} {shape} resting on a {bg} surface",
        f"an illustration with a bright {color} {shape} over a {bg} field",
    ])


def fluent_wrong(sc, rng):
    o = main_object(sc)
    name = train.SHAPES[o["shape"]][0]
    if o["color"] != sc["bg"] and rng.random() < 0.5:
        # The object's and the background's colours swapped.
        return fluent(sc, rng, sc["bg"], name, o["color"])
    other = rng.choice([s for s in train.SHAPES if s != o["shape"]])
    return fluent(sc, rng, o["color"], train.SHAPES[other][0], sc["bg"])


def main():
    rng = random.Random(26)
    nrng = np.random.default_rng(26)
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    rows = []
    for c in range(160):
        contributor = f"labeller_{c:03d}"
        scenes = [train.scene(rng) for _ in range(4)]
        for s, sc in enumerate(scenes):
            sc["objects"] = sc["objects"][:1]  # one object, so every caption kind is about it
        for s, sc in enumerate(scenes):
            image = f"{contributor}_{s}.jpg"
            w, h = rng.choice([(112, 112), (128, 112), (112, 144), (160, 120)])
            train.render(sc, nrng, w, h).save(os.path.join(OUT, "images", image), quality=60)
            other = train.mismatch(sc, rng)
            o = main_object(sc)
            kinds = {
                0: [("plain", train.caption(sc, rng), True), ("mismatch", train.caption(other, rng), False)],
                1: [("unusual", unusual(sc, rng), True), ("unusual_wrong", unusual(other, rng), False)],
                2: [("fluent", fluent(sc, rng, o["color"], train.SHAPES[o["shape"]][0], sc["bg"]), True),
                    ("fluent_wrong", fluent_wrong(sc, rng), False)],
                3: [("unusual", unusual(sc, rng), True), ("fluent_wrong", fluent_wrong(sc, rng), False),
                    ("fluent", fluent(sc, rng, o["color"], train.SHAPES[o["shape"]][-1], sc["bg"]), True)],
            }[s]
            for k, (kind, text, accept) in enumerate(kinds):
                rows.append({"key": f"{contributor}_{s}_{k}", "contributor_id": contributor, "image": image,
                             "caption": text, "accept": accept, "kind": kind})
    with open(os.path.join(OUT, "labels.json"), "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    print(f"{len(rows)} labelled pairs, {sum(r['accept'] for r in rows)} accepted, in {OUT}")


if __name__ == "__main__":
    main()

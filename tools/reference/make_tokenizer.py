#!/usr/bin/python3
"""Builds the tokenizer test fixtures in test/fixtures/tokenizer/ with the
reference SentencePiece library (run with /usr/bin/python3, sentencepiece 0.1.97).

  tiny-sp.model   a ~1000-piece BPE model trained with LLaMA-2's settings on a
                  radiology-flavoured corpus this script writes itself
  vocab.tsv       the same vocabulary as text, so C++ tests need neither GGUF nor
                  protobuf: id <TAB> piece as UTF-8 hex <TAB> score <TAB> type
  goldens.json    strings with SentencePiece's own ids (no BOS) and decode(ids),
                  plus "<s>"/"</s>"-splitting cases for encode(special=true)
  model-dump.json the settings and piece table SentencePiece reports for the
                  model, for the TypeScript ModelProto reader test

Everything is deterministic: fixed random seeds, one training thread, no input
shuffling, and the training runs in a temporary directory with relative paths
so that no absolute path ends up inside the model's trainer_spec.
"""
import json
import os
import random
import shutil
import struct
import sys
import tempfile

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "test", "fixtures", "tokenizer")

# --- corpus -----------------------------------------------------------------

FINDINGS = [
    "The heart size is {size}.", "There is {sev} cardiomegaly.", "No cardiomegaly.",
    "There is a {side} pleural effusion.", "Small bilateral pleural effusions are present.",
    "No pleural effusion or pneumothorax.", "There is a {sev} {side} pneumothorax measuring {n} mm.",
    "{Sev} atelectasis at the {side} lung base.", "Patchy consolidation in the {side} {lobe} lobe.",
    "Findings are consistent with pulmonary edema.", "Mild interstitial pulmonary edema.",
    "The lungs are clear.", "No focal consolidation.", "The mediastinal contours are within normal limits.",
    "A {n} cm nodule is seen in the {side} {lobe} lobe.", "Endotracheal tube tip is {n} cm above the carina.",
    "Right internal jugular central venous catheter terminates in the SVC.",
    "Nasogastric tube courses below the diaphragm.", "Degenerative changes of the thoracic spine.",
    "The costophrenic angles are {state}.", "Hilar contours are {state}.",
    "Compared with the prior study from {date}, there is {change}.",
    "Blunting of the {side} costophrenic angle suggests a small effusion.",
    "Retrocardiac opacity may represent atelectasis or pneumonia.",
    "There is elevation of the {side} hemidiaphragm.", "Aortic knob calcification is noted.",
    "Sternotomy wires are intact.", "Cardiac silhouette measures {n}.{d} cm.",
    "Cardiothoracic ratio is 0.{d}{d}.", "Heart rate {n} bpm, SpO2 {n}%.",
]
IMPRESSIONS = [
    "IMPRESSION: No acute cardiopulmonary process.", "IMPRESSION: {Sev} cardiomegaly with pulmonary edema.",
    "IMPRESSION: {Side} pleural effusion with adjacent atelectasis.",
    "IMPRESSION: Small {side} apical pneumothorax.", "IMPRESSION: Consolidation concerning for pneumonia.",
    "Impression: stable appearance of the chest.", "FINDINGS: {finding}",
]
GENERAL = [
    "The patient is a {n}-year-old man with shortness of breath.",
    "The quick brown fox jumps over the lazy dog.", "Please compare with previous examinations.",
    "This report was dictated on {date} at {n}:{d}{d}.", "Clinical history: cough and fever for {n} days.",
    "Technique: PA and lateral views of the chest.", "Portable AP view of the chest was obtained.",
    "Recommend follow-up CT in {n} months.", "Café au lait, naïve façade, résumé, São Paulo, Zürich.",
    "Der Patient klagt über Atemnot.", "La radiographie thoracique est normale.",
    "El paciente presenta derrame pleural.", "Μικρή πλευριτική συλλογή.", "Рентгенограмма органов грудной клетки.",
    "胸部X光片显示心脏增大。", "胸部レントゲン写真。", "Dr. Smith reviewed the images; no changes were made.",
]
WORDS = dict(
    size=["normal", "enlarged", "mildly enlarged", "at the upper limits of normal"],
    sev=["mild", "moderate", "severe", "small", "large", "trace"],
    side=["right", "left", "bilateral"],
    lobe=["upper", "middle", "lower"],
    state=["sharp", "blunted", "normal", "unremarkable"],
    change=["no significant change", "interval improvement", "worsening of the effusion",
            "new consolidation", "resolution of the pneumothorax"],
)


def fill(template, rng):
    def pick(key):
        return rng.choice(WORDS[key])
    out = template
    while "{" in out:
        a = out.index("{")
        b = out.index("}", a)
        key = out[a + 1:b]
        if key == "n":
            val = str(rng.randint(1, 120))
        elif key == "d":
            val = str(rng.randint(0, 9))
        elif key == "date":
            val = "%04d-%02d-%02d" % (rng.randint(2015, 2024), rng.randint(1, 12), rng.randint(1, 28))
        elif key == "finding":
            val = fill(rng.choice(FINDINGS), rng)
        elif key[0].isupper():
            val = pick(key.lower()).capitalize()
        else:
            val = pick(key)
        out = out[:a] + val + out[b + 1:]
    return out


def report(rng):
    parts = [fill(rng.choice(FINDINGS), rng) for _ in range(rng.randint(2, 6))]
    parts.append(fill(rng.choice(IMPRESSIONS), rng))
    if rng.random() < 0.4:
        parts.insert(0, fill(rng.choice(GENERAL), rng))
    sep = rng.choice([" ", " ", "  ", "\n"])
    return sep.join(parts)


def write_corpus(path):
    rng = random.Random(20240601)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(6000):
            # A line may hold a newline-joined report; the trainer reads lines, so
            # split them again (newlines never reach the vocabulary, as in LLaMA).
            for line in report(rng).split("\n"):
                f.write(line + "\n")
        for _ in range(600):
            f.write(fill(rng.choice(GENERAL), rng) + "\n")


# LLaMA-2's tokenizer settings, at a tiny vocabulary size.
TRAIN_ARGS = dict(
    model_type="bpe", vocab_size=1000, character_coverage=0.9995, byte_fallback=True,
    split_digits=True, normalization_rule_name="identity", add_dummy_prefix=True,
    remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
    num_threads=1, shuffle_input_sentence=False, input_sentence_size=0, minloglevel=2)


def train(workdir):
    write_corpus(os.path.join(workdir, "corpus.txt"))
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        spm.SentencePieceTrainer.train(input="corpus.txt", model_prefix="tiny-sp", **TRAIN_ARGS)
    finally:
        os.chdir(cwd)
    return os.path.join(workdir, "tiny-sp.model")


# --- golden strings -------------------------------------------------------------

def golden_strings():
    s = [
        "", " ", "  ", "   ", "\t", "\n", "\r\n", " \t \n ", "a", "A", ".", "▁", "▁▁x", "x▁",
        "hello", "Hello world", "hello  world", "hello   world", " hello", "  hello", "hello ",
        "hello  ", " hello ", "\thello\tworld\t", "line one\nline two\n\nline four", "a\nb",
        "No acute cardiopulmonary process.", "IMPRESSION: No acute cardiopulmonary process.",
        "There is mild cardiomegaly.", "Small left pleural effusion.",
        "There is a small right apical pneumothorax measuring 12 mm.",
        "Bibasilar atelectasis. No consolidation.", "Findings consistent with pulmonary edema.",
        "FINDINGS: The lungs are clear. The heart size is normal.\nIMPRESSION: Normal chest.",
        "cardiomegaly", "Cardiomegaly", "CARDIOMEGALY", "cardiomegalyyy", "pneumothoraces",
        "atelectatic", "consolidative", "edematous", "effusions", "pleuralpleural",
        "12", "123", "1234567890", "3.14159", "0.5 cm", "12.5 mm", "1,234", "-42", "+7",
        "CTR 0.55", "2.3 x 1.8 cm", "T7-T8", "SpO2 98%", "BP 120/80 mmHg", "2024-01-31",
        "10:45", "x=3", "a+b=c", "100%", "$5", "#1", "@home", "e-mail", "under_score",
        "Café", "naïve", "résumé", "façade", "São Paulo", "Zürich", "Ärzte über Öl",
        "ñandú", "Ελληνικά", "αβγδε", "Μικρή πλευριτική συλλογή.", "Привет мир", "Рентген",
        "胸部", "胸部X光片显示心脏增大。", "日本語のテキスト", "한국어", "中文 和 English 混合",
        "emoji 😀", "😀", "😀😀😀", "🫁 lungs", "❤️", "👍🏽", "🇺🇸", "👨‍⚕️ doctor",
        "mixed 😀 text ü and 中", "math ∑ ∫ √ ∞ ≤ ≥", "arrows → ← ↑ ↓", "° degrees 37°C",
        "µm", "±2", "×3", "½", "“quoted”", "‘single’", "em—dash", "en–dash", "ellipsis…",
        "\u00a0nbsp", "zero\u200bwidth", "soft\u00adhyphen", "\u0301combining", "e\u0301",
        "<s>", "</s>", "<s> hello", "hello </s>", "<s>hello</s>", "a<s>b</s>c", "<unk>",
        "<0x41>", "<0xFF>", "<pad>", "<s><s>", "</s></s>", "< s >", "<s", "s>",
        "A  B   C    D", " leading", "trailing ", "   three leading", "three trailing   ",
        "\n\nleading newlines", "trailing newlines\n\n", "\ttab\tseparated\tvalues",
        "CamelCaseWords", "ALLCAPS TEXT", "MiXeD cAsE", "don't", "it's", "(parenthetical)",
        "[bracketed]", "{braced}", "semi;colon", "question?", "exclaim!", "quote\"d",
        "back\\slash", "slash/ed", "pipe|d", "tilde~", "caret^", "back`tick",
        "The quick brown fox jumps over the lazy dog.", "Pack my box with five dozen liquor jugs.",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
        "Compared with 2023-05-14, the right pleural effusion has decreased.",
        "ET tube 4.5 cm above carina; NG tube in stomach; right PICC at cavoatrial junction.",
        "USER: <image>\nDescribe the findings. ASSISTANT:",
        "You are a helpful radiology assistant.",
    ]
    rng = random.Random(7)
    # Report-like sentences drawn afresh (different seed from the corpus).
    for _ in range(50):
        s.append(report(rng))
    # Random strings over a mixed alphabet, including whitespace runs and
    # characters outside the vocabulary (byte fallback).
    alphabet = list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:-()/%  \t\n") + \
        list("éüñßøπλдж中胸😀🫁€…")
    for _ in range(40):
        n = rng.randint(1, 40)
        s.append("".join(rng.choice(alphabet) for _ in range(n)))
    # Long inputs, the size of a long prompt.
    s.append(" ".join(report(rng) for _ in range(12)))
    s.append("cardiomegaly " * 200)
    s.append("a" * 1000)
    s.append(" " * 300 + "x" + " " * 300)
    s.append("😀" * 100)
    s.append("0123456789" * 50)
    return s


def special_strings():
    return [
        "<s>", "</s>", "<s>hello", "hello</s>", "<s> hello </s>", "a<s>b</s>c",
        "<s>USER: Describe the image. ASSISTANT: No acute process.</s>",
        "<s><s>", "</s></s>", "x </s> <s> y", "<s >", "<\\s>", "no markers here",
        "", " ", "<s>  </s>", "first</s><s>second</s>", "<<s>>", "</s><s>",
    ]


def split_special(text):
    """How encode(special=true) is specified: split on literal <s>/</s>, encode
    each chunk on its own (own dummy prefix), BOS/EOS at the markers."""
    chunks, i, cur = [], 0, ""
    while i < len(text):
        if text.startswith("<s>", i):
            chunks.append(cur); chunks.append(1); cur = ""; i += 3
        elif text.startswith("</s>", i):
            chunks.append(cur); chunks.append(2); cur = ""; i += 4
        else:
            cur += text[i]; i += 1
    chunks.append(cur)
    return chunks


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = train(tmp)
        shutil.copyfile(model_path, os.path.join(OUT, "tiny-sp.model"))
    model_path = os.path.join(OUT, "tiny-sp.model")
    sp = spm.SentencePieceProcessor(model_file=model_path)

    def f32(x):  # the exact float32 value as a Python float
        return struct.unpack("<f", struct.pack("<f", x))[0]

    # Piece table through SentencePiece's own API (Debian ships it without
    # protobuf's Python module, so the ModelProto itself is not readable here).
    def ptype(i):
        if sp.is_unknown(i): return 2
        if sp.is_control(i): return 3
        if sp.is_unused(i): return 5
        if sp.is_byte(i): return 6
        return 1  # no user-defined symbols were asked for in training
    table = [(sp.id_to_piece(i), f32(sp.get_score(i)), ptype(i)) for i in range(sp.get_piece_size())]

    # vocab.tsv
    with open(os.path.join(OUT, "vocab.tsv"), "w", encoding="ascii", newline="\n") as f:
        f.write("# id\tpiece_utf8_hex\tscore\ttype  (from tools/reference/make_tokenizer.py)\n")
        f.write("# bos=%d eos=%d unk=%d\n" % (sp.bos_id(), sp.eos_id(), sp.unk_id()))
        for i, (piece, score, t) in enumerate(table):
            f.write("%d\t%s\t%s\t%d\n" % (i, piece.encode("utf-8").hex(), repr(score), t))

    # goldens.json
    goldens = []
    seen = set()
    for text in golden_strings():
        if text in seen:
            continue
        seen.add(text)
        ids = sp.encode(text)
        goldens.append({"text": text, "ids": ids, "decoded": sp.decode(ids)})
    special = []
    for text in special_strings():
        ids = []
        for c in split_special(text):
            ids.extend([c] if isinstance(c, int) else sp.encode(c))
        special.append({"text": text, "ids": ids})
    # Decoding sequences that SentencePiece never produces itself: control
    # tokens in the middle, unknown, lone/invalid byte pieces.
    byte = lambda b: sp.piece_to_id("<0x%02X>" % b)
    raw = [
        [1] + sp.encode("hello world") + [2],
        [1, 1] + sp.encode(" two spaces"),
        sp.encode("a") + [2] + sp.encode("b"),
        [0], [0, 0] + sp.encode("x"), sp.encode("x") + [0],
        [byte(0xE2)], [byte(0xE2), byte(0x82)], [byte(0xE2), byte(0x82), byte(0xAC)],
        [byte(0xFF)], [byte(0x80), byte(0x41)], [byte(0xF0), byte(0x9F)] + sp.encode("ok"),
        sp.encode("ok") + [byte(0xC3)], [byte(0x20), byte(0x41)],
        [sp.piece_to_id("▁")] * 3, [2, sp.piece_to_id("▁")] + sp.encode("hi"),
    ]
    decodes = [{"ids": ids, "decoded": sp.decode(ids)} for ids in raw]
    with open(os.path.join(OUT, "goldens.json"), "w", encoding="utf-8") as f:
        json.dump({"source": "sentencepiece %s, tools/reference/make_tokenizer.py" % spm.__version__,
                   "encode": goldens, "encode_special": special, "decode": decodes},
                  f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")

    # model-dump.json, for the TypeScript protobuf reader
    # Spec fields are the training arguments above; ids as SentencePiece reports them.
    pieces = [{"id": i, "piece": p, "score": sc, "type": t} for i, (p, sc, t) in enumerate(table)]
    dump = {
        "pieceCount": len(table),
        "modelType": "bpe", "vocabSize": TRAIN_ARGS["vocab_size"],
        "unkId": sp.unk_id(), "bosId": sp.bos_id(), "eosId": sp.eos_id(), "padId": sp.pad_id(),
        "byteFallback": TRAIN_ARGS["byte_fallback"], "normalizerName": TRAIN_ARGS["normalization_rule_name"],
        "addDummyPrefix": TRAIN_ARGS["add_dummy_prefix"],
        "removeExtraWhitespaces": TRAIN_ARGS["remove_extra_whitespaces"],
        # The first 300 pieces (specials, all 256 bytes, first merges) and every 37th after.
        "pieces": pieces[:300] + pieces[300::37],
    }
    with open(os.path.join(OUT, "model-dump.json"), "w", encoding="utf-8") as f:
        json.dump(dump, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print("pieces=%d goldens=%d special=%d decodes=%d" % (len(table), len(goldens), len(special), len(decodes)))


if __name__ == "__main__":
    sys.exit(main())

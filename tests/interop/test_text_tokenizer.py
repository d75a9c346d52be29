"""WordPiece parity: DistillKit's tokenizer against Hugging Face `tokenizers`, token for token.

The corpus is this machine's own Debian package list: `distill data debian-packages` writes it from
`apt-cache dumpavail` and apt's Translation-en files (skipped, with the reason, where apt or the
descriptions are missing). Then `distill data tokenize` must give the ids `tokenizers` gives with
all-MiniLM-L6-v2's tokenizer.json for every long description (untruncated) and every summary, count
exactly the descriptions `tokenizers` truncates at 128 tokens and cut them the same way, and agree
on every code point from U+0020 to U+3FFFF and in planes 14 to 16 (each between letters, so
removal, whitespace, punctuation, accents and CJK splitting all show).

Speed: the commands run on the release binary when DISTILL_RELEASE_BINARY names one (scripts/test.sh
builds it), as the corpus is ~34 MB of text; the debug build takes a few times longer.

Environment: DISTILL_RELEASE_BINARY, or DISTILL_BINARY or DISTILL_SCRATCH as in distillcli.py.
"""
import csv
import json

import pytest

from distillcli import debian_corpus, distill_release, minilm_folder


tokenizers = pytest.importorskip("tokenizers")


distill = distill_release


def teacher_folder():
    return minilm_folder()


@pytest.fixture(scope="module")
def reference():
    tokenizer = tokenizers.Tokenizer.from_file(str(teacher_folder() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = debian_corpus(tmp_path_factory.mktemp("debian") / "debian.csv", run=distill)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 1000, f"only {len(rows)} packages"
    record = json.loads(path.with_name(path.name + ".json").read_text())
    assert record["statistics"]["train"] + record["statistics"]["test"] == len(rows)
    assert record["snapshot_date"]
    return path, rows


def swift_ids(path, column, max_length):
    out = path.with_name(f"{column}-{max_length}.jsonl")
    result = distill("data", "tokenize", "--tokenizer", teacher_folder(), "--data", path, "--column", column,
                     "--max-length", max_length, "--out", out, "--json")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    with open(out) as f:
        return [json.loads(line) for line in f], summary


def first_difference(reference, texts, expected, actual):
    for i, (want, got) in enumerate(zip(expected, actual)):
        if want != got:
            j = next(k for k in range(len(want) + 1) if k >= len(got) or k >= len(want) or want[k] != got[k])
            return (f"row {i} ({texts[i][:80]!r}) differs at token {j}: tokenizers "
                    f"{[reference.id_to_token(t) for t in want[max(0, j - 3):j + 3]]}, DistillKit "
                    f"{[reference.id_to_token(t) for t in got[max(0, j - 3):j + 3]]}")
    return None


@pytest.mark.parametrize("column", ["description", "summary"])
def test_whole_corpus_token_for_token(corpus, reference, column):
    path, rows = corpus
    texts = [row[column] for row in rows]
    ids, summary = swift_ids(path, column, 1_000_000)
    assert summary["rows"] == len(texts) and summary["truncated"] == 0
    expected = [e.ids for e in reference.encode_batch(texts)]
    mismatches = sum(a != b for a, b in zip(expected, ids))
    assert len(ids) == len(expected)
    assert mismatches == 0, f"{mismatches} of {len(texts)} {column}s differ; first: {first_difference(reference, texts, expected, ids)}"


def test_truncation_is_counted_and_cut_as_tokenizers_does(corpus, reference):
    path, rows = corpus
    texts = [row["description"] for row in rows]
    ids, summary = swift_ids(path, "description", 128)
    long = [i for i, row in enumerate(ids) if len(row) == 128]
    candidates = [texts[i] for i in long]
    reference.enable_truncation(128)
    try:
        cut = reference.encode_batch(candidates)
    finally:
        reference.no_truncation()
    truncated = sum(bool(e.overflowing) for e in cut)
    assert summary["truncated"] == truncated > 0, summary
    assert [e.ids for e in cut] == [ids[i] for i in long]
    assert all(len(row) <= 128 for row in ids)


def test_every_code_point_between_letters(tmp_path, reference):
    code_points = [c for c in list(range(0x20, 0x40000)) + list(range(0xE0000, 0x110000, 17))
                   if not 0xD800 <= c <= 0xDFFF and c != 0x7F]
    texts = ["a" + chr(c) + "b é" + chr(c) for c in code_points]
    path = tmp_path / "code-points.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    ids, _ = swift_ids(path, "text", 64)
    expected = [e.ids for e in reference.encode_batch(texts)]
    differ = [f"U+{c:04X}" for c, a, b in zip(code_points, expected, ids) if a != b]
    assert len(ids) == len(texts)
    assert not differ, f"{len(differ)} code points differ, e.g. {differ[:20]}; first: {first_difference(reference, texts, expected, ids)}"

"""Text students shipped and measured: `distill export STUDENT --onnx` run by onnxruntime, and `distill eval` of text models.

Two small students of all-MiniLM-L6-v2 (a token bag with hashed bigrams, and a transformer with a
projection to the teacher's width) are distilled on a slice of the Debian package corpus, exported
to ONNX and run by onnxruntime on a few hundred descriptions tokenized by Hugging Face
`tokenizers` (the tokenizer stays outside the graph): the vectors must match `distill embed`'s
within 1e-4, and `distill inspect` must read the file back. `distill eval` measures the students
and the teacher on the same slice as `distill text-kd` does. Skipped, with the reason, where apt,
the teacher package, onnxruntime or tokenizers is missing.

Environment: DISTILL_RELEASE_BINARY (scripts/test.sh sets it), else DISTILL_BINARY or DISTILL_SCRATCH, as in distillcli.py.
"""
import csv
import json

import numpy as np
import pytest

from distillcli import blob_csvs, debian_corpus, distill_release, minilm_folder

ort = pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")

SLICE = ["--train-limit", 300, "--test-limit", 300, "--max-length", 64]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return debian_corpus(tmp_path_factory.mktemp("debian") / "debian.csv", run=distill_release)


@pytest.fixture(scope="module")
def students(corpus, tmp_path_factory):
    """{name: (run folder, text-kd's student row)} for a bag:32 and a bert:1-64 (projected embeddings) student."""
    folder, work = minilm_folder(), tmp_path_factory.mktemp("students")
    cache = work / "vectors.safetensors"
    out = {}
    for name, options in [("bag", ["--student", "bag:32", "--epochs", 2]),
                          ("bert", ["--student", "bert:1-64", "--init", "projected", "--epochs", 1, "--transfer-limit", 100])]:
        result = distill_release("text-kd", "--teacher", folder, "--corpus", corpus, *SLICE, *options, "--teacher-cache", cache,
                                 "--output", work / name, "--json")
        rows = {r["role"]: r for r in json.loads(result.stdout)["rows"]}
        out[name] = (work / name, rows["student"], rows["teacher"], cache)
    return out


def descriptions(corpus, count=300):
    with open(corpus, newline="", encoding="utf-8") as f:
        rows = [r["description"] for r in csv.DictReader(f)]
    # Every few rows, so the set mixes sections, lengths and truncated texts.
    return rows[::max(1, len(rows) // count)][:count]


@pytest.mark.parametrize("name", ["bag", "bert"])
def test_onnxruntime_matches_distillkit(name, students, corpus, tmp_path):
    run, row, _, _ = students[name]
    onnx_file = tmp_path / f"{name}.onnx"
    report = json.loads(distill_release("export", run, "--onnx", onnx_file, "--json").stdout)
    assert report["output"] == "sentence_embedding" and report["largest_difference"] < 1e-4, report
    tokenizer_file = tmp_path / f"{name}.tokenizer.json"
    assert tokenizer_file.exists(), report

    texts = descriptions(corpus)
    table = tmp_path / "texts.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    distill_release("embed", run, "--data", table, "--column", "text", "--out", tmp_path / "e.npy")
    expected = np.load(tmp_path / "e.npy")

    tok = tokenizers.Tokenizer.from_file(str(tokenizer_file))
    assert tok.truncation["max_length"] == 64, tok.truncation  # shipped cutting where the student was trained
    tok.enable_padding(pad_id=0)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = []
    for start in range(0, len(texts), 32):  # padded batches of 32, as a user would run it
        encoded = tok.encode_batch(texts[start:start + 32])
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        got.append(session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0])
    got = np.concatenate(got)
    assert got.shape == expected.shape == (len(texts), 384)
    difference = float(np.abs(got - expected).max())
    print(f"{name}: {len(texts)} texts, largest difference {difference:.2e}")
    assert difference < 1e-4, difference
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)

    inspected = json.loads(distill_release("inspect", onnx_file, "--json").stdout)
    assert [i["name"] for i in inspected["inputs"]] == ["input_ids", "attention_mask"], inspected
    # The weights give or take a few: the graph adds scalar constants (the scores' scale, the hash's
    # multipliers) and folds the token-type row a text uses into the positions (the other row is not written).
    assert inspected["outputs"][0]["name"] == "sentence_embedding" and abs(inspected["parameters"] - row["params"]) < 1000, (inspected, row)


def test_eval_measures_text_models_as_text_kd(students, corpus, tmp_path):
    for name in ["bag", "bert"]:
        run, row, teacher_row, cache = students[name]
        report = json.loads(distill_release("eval", run, "--data", corpus, "--train-limit", 300, "--test-limit", 300, "--json").stdout)
        print(name, json.dumps(report))
        assert report["task"] == "sentence-embedding" and report["kind"] == "text-kd student" and report["params"] == row["params"]
        assert report["test_rows"] == 300 and report["max_length"] == 64
        # text-kd's row is the last epoch's student; best.safetensors the best epoch's (the same at one epoch).
        if name == "bert":
            assert abs(report["recall_at_10"] - row["recall_at_10"]) < 1e-9 and abs(report["mrr"] - row["mrr"]) < 1e-6, (report, row)
            assert abs(report["section_accuracy"] - row["section_accuracy"]) < 1e-9, (report, row)
    _, _, teacher_row, cache = students["bag"]
    teacher = distill_release("eval", minilm_folder(), "--data", corpus, *SLICE, "--json")
    report = json.loads(teacher.stdout)
    assert report["kind"] == "sentence encoder" and abs(report["recall_at_10"] - teacher_row["recall_at_10"]) < 1e-9, (report, teacher_row)
    assert abs(report["section_accuracy"] - teacher_row["section_accuracy"]) < 1e-9, (report, teacher_row)
    text = distill_release("eval", students["bert"][0], "--data", corpus, "--train-limit", 300, "--test-limit", 300).stdout
    assert "recall@10" in text and "linear probe" in text, text


def test_bad_input_is_a_clear_error(students, corpus, tmp_path):
    run = students["bag"][0]
    image_data = distill_release("eval", run, "--data", "fashion-mnist", check=False)
    assert image_data.returncode != 0 and "is a text model" in image_data.stderr and "CORPUS.csv" in image_data.stderr, image_data.stderr
    no_section = tmp_path / "no-section.csv"
    no_section.write_text("package,split,summary,description\np,test,a,b\n")
    missing = distill_release("eval", run, "--data", no_section, check=False)
    assert missing.returncode != 0 and "no column 'section'" in missing.stderr and "no-section.csv" in missing.stderr, missing.stderr
    wrong_length = distill_release("eval", run, "--data", corpus, "--max-length", 128, check=False)
    assert wrong_length.returncode != 0 and "reads 64 tokens" in wrong_length.stderr, wrong_length.stderr
    # An image model on the text corpus.
    mlp = tmp_path / "mlp"
    blob_csvs(tmp_path)
    distill_release("train", "--data", tmp_path / "train.csv", "--label", "label", "--model", "mlp:4-8-3", "--epochs", 1, "--output", mlp, "--quiet")
    image_model = distill_release("eval", mlp, "--data", corpus, check=False)
    assert image_model.returncode != 0 and "is a text corpus" in image_model.stderr and "not a text model" in image_model.stderr, image_model.stderr
    other_format = distill_release("export", run, "--c", tmp_path / "s.c", check=False)
    assert other_format.returncode != 0 and "export to ONNX only" in other_format.stderr, other_format.stderr

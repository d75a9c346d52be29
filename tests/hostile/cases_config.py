"""Hostile configuration: YAML experiments, `config.json` on --resume, and command-line values."""
import json

from corpus import Case
from craft import blobs_csv, blobs_npz

DATA = {"d.npz": blobs_npz()}
KD = ["kd", "--teacher-outputs", "t.npy", "--data", "d.npz", "--student", "mlp:4-8-3", "--epochs", "1", "--quiet"]


def _teacher_outputs():
    import io
    import numpy as np
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32))
    return buffer.getvalue()


def yaml_case(name, body, expect=None):
    text = "data: d.npz\nstudent: mlp:4-8-3\nepochs: 1\n" + body
    return Case("config-yaml", name, ["run", "e.yaml", "--quiet"], {"e.yaml": text, **DATA}, expect or ["e.yaml"])


def resume_case(name, config, expect=None, extra_files=None):
    files = {"run/config.json": config if isinstance(config, (str, bytes)) or callable(config) else json.dumps(config), **DATA, **(extra_files or {})}
    return Case("config-resume", name, ["train", "--resume", "run", "--quiet"], files, expect or ["run"])


GOOD = {"data": "d.npz", "student": "mlp:4-8-3", "teachers": [], "losses": [{"ce": {"weight": 1}}], "epochs": 1, "batch_size": 16,
        "optimizer": "adam", "learning_rate": 0.001, "weight_decay": 0, "momentum": 0.9, "schedule": "constant", "warmup_epochs": 0,
        "seed": 0, "shift": 0, "flip": False}


def cases():
    out = []
    # YAML values out of range or of the wrong type.
    for key, values in {
        "epochs": [".inf", "1e300", "9223372036854775807", "-1", "0", "abc", "[1]", ".nan", "1.5"],
        "batch_size": ["9223372036854775807", "0", "-5", "1e20"],
        "seed": ["-1", "1e30", "18446744073709551616"],
        "learning_rate": ["0", "-1", ".nan", ".inf", "1e300", "abc"],
        "momentum": [".nan", "-0.5", "2"],
        "weight_decay": ["-1", ".nan", ".inf"],
        "gradient_clip": ["0", "-1", ".nan"],
        "warmup_epochs": ["-1", "9223372036854775807"],
        "shift": ["-1", "1000000000"],
        "train_limit": ["0", "-1"],
        "label_limit": ["-1"],
        "optimizer": ["adamx", "[adam]"],
        "schedule": ["linear"],
        "flip": ["maybe"],
        "data": ["[1, 2]", "''"],
        "student": ["mlp:4-99999999999-3", "mlp:9223372036854775807-3", "''"],
        "teacher_outputs_kind": ["softmax"],
        "mixup": [".nan", "-1"],
    }.items():
        for v in values:
            out.append(yaml_case(f"{key}={v}", f"{key}: {v}\n", ["e.yaml", key]))
    kd = "teacher_outputs: t.npy\n"
    tfiles = {"t.npy": _teacher_outputs()}
    for name, loss in {
        "temperature-0": "[{kd: {temperature: 0}}]", "temperature-negative": "[{kd: {temperature: -2}}]",
        "temperature-nan": "[{kd: {temperature: .nan}}]", "temperature-inf": "[{kd: {temperature: .inf}}]",
        "temperature-1e300": "[{kd: {temperature: 1e300}}]", "weight-nan": "[{kd: {weight: .nan}}]",
        "weight-negative": "[{kd: {weight: -1}}]", "weight-inf": "[{kd: {weight: .inf}}]", "losses-empty": "[]",
        "losses-unknown": "[{kdx: {}}]", "losses-string": "kd", "losses-nested": "[[kd]]", "dkd-beta-nan": "[{dkd: {beta: .nan}}]",
        "dkd-warmup-negative": "[{dkd: {warmup: -1}}]", "kd-unknown-option": "[{kd: {tempreature: 4}}]",
        "option-string": "[{kd: {temperature: hot}}]",
    }.items():
        c = yaml_case(f"loss-{name}", kd + f"losses: {loss}\n", ["e.yaml"])
        c.files.update(tfiles)
        out.append(c)
    out.append(yaml_case("unknown-key", "epochz: 3\n", ["e.yaml", "epochz"]))
    out.append(yaml_case("not-a-map", "", ["e.yaml"]))
    out[-1].files["e.yaml"] = "- 1\n- 2\n"
    out.append(Case("config-yaml", "fifo", ["run", "e.yaml"], {"e.yaml": lambda p: __import__("os").mkfifo(p)}, ["e.yaml"]))
    out.append(Case("config-yaml", "folder", ["run", "e.yaml"], {"e.yaml": lambda p: p.mkdir()}, ["e.yaml"]))
    out.append(Case("config-yaml", "binary", ["run", "e.yaml"], {"e.yaml": bytes(range(256)) * 4}, ["e.yaml"]))
    # config.json on --resume.
    for key, value in {"epochs": 1e300, "batch_size": -1, "learning_rate": "fast", "seed": -1, "student": "mlp:4-9223372036854775807",
                       "losses": "ce", "momentum": None, "data": 7, "epochs ": 3}.items():
        cfg = dict(GOOD); cfg[key] = value
        out.append(resume_case(f"{key.strip()}={value}" + ("-space" if key.endswith(" ") else ""), cfg))
    out.append(resume_case("not-json", "{\"epochs\": "))
    out.append(resume_case("json-array", "[1, 2]"))
    out.append(resume_case("nan-literal", json.dumps(GOOD).replace('"momentum": 0.9', '"momentum": NaN')))
    out.append(resume_case("config-is-folder", lambda p: p.mkdir()))
    out.append(resume_case("config-is-fifo", lambda p: __import__("os").mkfifo(p)))
    out.append(Case("config-resume", "no-folder", ["train", "--resume", "nowhere"], {}, ["nowhere"]))
    out.append(Case("config-resume", "no-config", ["train", "--resume", "run"], {"run/metrics.jsonl": "{}"}, ["run"]))
    # Command-line values.
    cli = {
        "epochs-0": ["--epochs", "0"], "epochs-negative": ["--epochs", "-1"], "epochs-int64": ["--epochs", "9223372036854775807"],
        "batch-0": ["--batch-size", "0"], "batch-int64": ["--batch-size", "9223372036854775807"],
        "lr-nan": ["--lr", "nan"], "lr-negative": ["--lr", "-1"], "lr-inf": ["--lr", "inf"],
        "temperature-0": ["--temperature", "0"], "temperature-nan": ["--temperature", "nan"], "temperature-negative": ["--temperature", "-4"],
        "alpha-2": ["--alpha", "2"], "alpha-negative": ["--alpha", "-0.1"], "alpha-nan": ["--alpha", "nan"],
        "shift-negative": ["--shift", "-1"], "train-limit-0": ["--train-limit", "0"], "train-limit-negative": ["--train-limit", "-5"],
        "label-limit-negative": ["--label-limit", "-1"], "weight-decay-nan": ["--weight-decay", "nan"], "seed-negative": ["--seed", "-1"],
        "optimizer-unknown": ["--optimizer", "rmsprop"], "schedule-unknown": ["--schedule", "linear"],
        "outputs-kind-unknown": ["--teacher-outputs-kind", "softmax"], "method-unknown": ["--method", "kdx"],
    }
    for name, extra in cli.items():
        out.append(Case("cli", f"kd-{name}", KD + extra, {**DATA, **tfiles}, [extra[0]]))
    csv = {"d.csv": blobs_csv()}
    out.append(Case("cli", "cache-views-100000", ["cache-teacher", "--teacher", "m.safetensors", "--data", "d.npz", "--out", "t.npy", "--views", "100000", "--shift", "1"],
                    DATA, ["--views"]))
    out.append(Case("cli", "cache-batch-0", ["cache-teacher", "--teacher", "m.safetensors", "--data", "d.npz", "--out", "t.npy", "--batch-size", "0"], DATA, ["--batch-size"]))
    out.append(Case("cli", "cache-out-unknown-format", ["cache-teacher", "--teacher", "m.safetensors", "--data", "d.npz", "--out", "t.xlsx"], DATA, ["t.xlsx"]))
    out.append(Case("cli", "data-report-top-negative", ["data-report", "--data", "d.npz", "--top", "-1"], DATA, ["--top"]))
    out.append(Case("cli", "export-opset-99", ["export", "m.safetensors", "--onnx", "o.onnx", "--opset", "99"], {}, ["--opset"]))
    out.append(Case("cli", "eval-input-mean-nan", ["eval", "m.onnx", "--data", "d.npz", "--input-mean", "nan"], DATA, ["--input-mean"]))
    out.append(Case("cli", "eval-input-std-0", ["eval", "m.onnx", "--data", "d.npz", "--input-std", "0"], DATA, ["--input-std"]))
    out.append(Case("cli", "bench-batch-0", ["bench", "infer", "--batch", "0"], {}, ["--batch"]))
    out.append(Case("cli", "train-unknown-data", ["train", "--data", "imagenet", "--model", "mlp:4-8-3"], {}, ["imagenet"]))
    out.append(Case("cli", "train-csv-no-label", ["train", "--data", "d.csv", "--model", "mlp:4-8-3"], csv, ["d.csv"]))
    out.append(Case("cli", "train-csv-label-missing", ["train", "--data", "d.csv", "--label", "nope", "--model", "mlp:4-8-3"], csv, ["nope"]))
    out.append(Case("cli", "train-model-huge", ["train", "--data", "d.npz", "--model", "mlp:4-4294967296-3"], DATA, ["mlp:4-4294967296-3"]))
    out.append(Case("cli", "train-model-width-mismatch", ["train", "--data", "d.npz", "--model", "mlp:784-64-10", "--epochs", "1"], DATA, ["784"]))
    out.append(Case("cli", "train-model-classes-mismatch", ["train", "--data", "d.npz", "--model", "mlp:4-8-10", "--epochs", "1"], DATA, ["10"]))
    out.append(Case("cli", "train-model-yaml-fifo", ["train", "--data", "d.npz", "--model", "m.yaml"], {**DATA, "m.yaml": lambda p: __import__("os").mkfifo(p)}, ["m.yaml"]))
    return out + more_cases()


def more_cases():
    """The options every setting message names exist on the command line, and are checked there too."""
    return [Case("cli", f"kd-{name}", KD + extra, {**DATA, "t.npy": _teacher_outputs()}, [extra[0]]) for name, extra in {
        "momentum-2": ["--momentum", "2"], "momentum-nan": ["--momentum", "nan"], "warmup-negative": ["--warmup-epochs", "-1"],
        "warmup-past-epochs": ["--warmup-epochs", "5"], "gradient-clip-0": ["--gradient-clip", "0"], "gradient-clip-inf": ["--gradient-clip", "inf"],
    }.items()]

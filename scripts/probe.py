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

`--spectral DIR` (with `--within`) appends each clip's mean and standard deviation over
frames of its frame features (`emofuse features --npy DIR/ FILES`: MFCC 40 + ZCR + RMS)
to the encoder's features: the spectral stream's input, fused early in the probe.

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


def choose(y, groups, matrix, layers):
    """C (and the layer) with the best mean UA over inner folds of the training clips;
    `matrix(layer)` gives the training clips' features."""
    # One training speaker (TESS, leave one speaker out): stratified folds of its clips.
    if len(set(groups)) > 1:
        inner = list(GroupKFold(n_splits=min(4, len(set(groups)))).split(np.zeros(len(y)), y, groups))
    else:
        inner = list(StratifiedKFold(n_splits=4, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
    best = (-1.0, None, None)
    for layer in layers:
        x = matrix(layer)
        for c in C_GRID:
            scores = []
            for train, test in inner:
                scaler, model = fit(x[train], y[train], c)
                predicted = model.predict(scaler.transform(x[test]))
                scores.append(ua(y[test], predicted, sorted(set(y[test]) & set(y[train]))))
            best = max(best, (float(np.mean(scores)), c, layer), key=lambda b: b[0])
    return best[1], best[2]


def run_fold(train, test, variant, spectral=None):
    """train/test: lists of (vector, label, speaker, path). Returns (UA, C, layer).
    `spectral`: path → frame-feature statistics to append, or None."""
    def matrix(rows, layer):
        x = features(np.stack([row[0] for row in rows]), variant, layer)
        if spectral is None:
            return x
        return np.hstack([x, np.stack([spectral[row[3]] for row in rows])])

    y = np.array([row[1] for row in train])
    groups = np.array([row[2] for row in train])
    c, layer = choose(y, groups, lambda layer: matrix(train, layer),
                      range(len(train[0][0])) if variant == "best-layer" else [None])
    scaler, model = fit(matrix(train, layer), y, c)
    truth = np.array([row[1] for row in test])
    predicted = model.predict(scaler.transform(matrix(test, layer)))
    return ua(truth, predicted, sorted(set(truth) & set(y))), c, layer


def frame_statistics(report, directory):
    """path → mean and standard deviation over frames of `emofuse features --npy` arrays."""
    statistics = {}
    for clip in report["clips"]:
        frames = np.load(Path(directory) / (Path(clip["path"]).stem + ".npy"))  # [features, frames]
        statistics[clip["path"]] = np.concatenate([frames.mean(1), frames.std(1)])
    return statistics


def within(spec, variant, spectral_dir=None):
    report, vectors = load(spec)
    spectral = frame_statistics(report, spectral_dir) if spectral_dir else None
    clips = {c["path"]: (c["label"], c["speaker"]) for c in report["clips"]}
    rows = lambda paths: [(vectors[p], *clips[p], p) for p in paths if p in vectors]
    return [run_fold(rows(f["train"]), rows(f["test"]), variant, spectral) for f in report["folds"]]


def loco(specs, variant):
    corpora = []
    for spec in specs:
        report, vectors = load(spec)
        rows = []
        for clip in report["clips"]:
            label = "neutral" if clip["label"] == "calm" else clip["label"]
            if label in SHARED and clip["path"] in vectors:
                rows.append((vectors[clip["path"]], label, clip["speaker"], clip["path"]))
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
    parser.add_argument("--spectral", metavar="DIR", help="append frame-feature statistics (--within only)")
    args = parser.parse_args()
    if args.spectral and not args.within:
        parser.error("--spectral works with --within")
    for variant in args.variant or VARIANTS:
        results = within(args.within, variant, args.spectral) if args.within else loco(args.loco, variant)
        uas = np.array([r[0] for r in results])
        folds = [{"ua": r[0], "c": r[1], "layer": r[2], **({"corpus": r[3]} if len(r) > 3 else {})}
                 for r in results]
        print(json.dumps({"variant": variant, "ua_mean": float(uas.mean()), "ua_std": float(uas.std()),
                          "folds": folds}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()

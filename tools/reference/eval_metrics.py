#!/usr/bin/python3
"""Reference figures for `cxr-llava eval` (lib/eval/metrics.ts, bootstrap.ts),
computed with numpy independently of the TypeScript (run with /usr/bin/python3:
Debian's python3-numpy).

Writes test/fixtures/eval/:

  reference.csv   a synthetic manifest: 600 studies, image path + the 14 CheXpert
                  columns (1, 0, -1, blank), drawn with fixed seeds
  generated.csv   the "generated" side's labels for the same studies, as the
                  labeler would give them (the same CSV layout)
  goldens.json    per observation: the confusion counts, precision, recall, F1,
                  specificity, support; macro and micro averages; and 95%
                  bootstrap intervals of every metric, twice:
                    same_stream  drawn with mulberry32 exactly as bootstrap.ts
                                 draws (checks the resampling and percentiles
                                 draw for draw)
                    numpy        drawn with numpy's own generator (an
                                 independent check: bounds within 0.01)

The protocol (the paper's: definite labels only), restated here:
a (study, observation) pair is scored only when both the reference and the
generated label are definite, 1 (positive) or 0 (negative). Then
ref 1 / gen 1 is TP, ref 0 / gen 1 FP, ref 1 / gen 0 FN, ref 0 / gen 0 TN.
An uncertain (-1) or blank label on either side leaves the pair out.
precision TP/(TP+FP), recall TP/(TP+FN), specificity TN/(TN+FP),
F1 2TP/(2TP+FP+FN); a zero denominator makes the metric undefined (null).
Macro: mean over observations where the metric is defined. Micro: pooled counts.
Bootstrap: resample studies with replacement; percentiles 2.5 and 97.5 with
linear interpolation over the resamples where the metric is defined.
"""
import csv
import json
import os

import numpy as np

OBSERVATIONS = [
    'No Finding', 'Enlarged Cardiomediastinum', 'Cardiomegaly', 'Lung Lesion', 'Lung Opacity', 'Edema',
    'Consolidation', 'Pneumonia', 'Atelectasis', 'Pneumothorax', 'Pleural Effusion', 'Pleural Other',
    'Fracture', 'Support Devices',
]
N = 600
RESAMPLES = 1000
SEED = 7
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', '..', 'test', 'fixtures', 'eval')
M32 = 0xFFFFFFFF


def synth():
    """Reference and generated labels as float arrays (n x 14): 1, 0, -1, nan."""
    rng = np.random.default_rng(2025)
    ref = np.full((N, len(OBSERVATIONS)), np.nan)
    gen = np.full((N, len(OBSERVATIONS)), np.nan)
    for j, _ in enumerate(OBSERVATIONS):
        # Per observation: how often the reference mentions it, how often positive, how often uncertain.
        mention = rng.uniform(0.5, 0.95)
        pos = rng.uniform(0.15, 0.5)
        unc = rng.uniform(0.0, 0.12)
        u = rng.uniform(size=N)
        r = np.where(u < mention * unc, -1.0, np.where(u < mention * (unc + (1 - unc) * pos), 1.0, np.where(u < mention, 0.0, np.nan)))
        # The generated side agrees with a definite reference with some accuracy, else flips, hedges or omits.
        acc = rng.uniform(0.6, 0.92)
        v = rng.uniform(size=N)
        flip = np.where(r == 1.0, 0.0, 1.0)
        g = np.where(v < acc, r, np.where(v < acc + (1 - acc) * 0.6, flip, np.where(v < acc + (1 - acc) * 0.8, -1.0, np.nan)))
        # An undefined reference keeps a random generated label.
        w = rng.uniform(size=N)
        g = np.where(np.isnan(r) | (r == -1.0), np.where(w < 0.3, 1.0, np.where(w < 0.6, 0.0, np.nan)), g)
        ref[:, j] = r
        gen[:, j] = g
    # Edge cases: 'Pleural Other' has no reference positive (recall undefined);
    # 'Fracture' is never mentioned by the generated side (nothing scored).
    po = OBSERVATIONS.index('Pleural Other')
    ref[ref[:, po] == 1.0, po] = 0.0
    fr = OBSERVATIONS.index('Fracture')
    gen[:, fr] = np.nan
    return ref, gen


def cells(ref, gen):
    definite = np.isin(ref, [0.0, 1.0]) & np.isin(gen, [0.0, 1.0])
    return {
        'tp': definite & (ref == 1) & (gen == 1),
        'fp': definite & (ref == 0) & (gen == 1),
        'fn': definite & (ref == 1) & (gen == 0),
        'tn': definite & (ref == 0) & (gen == 0),
    }


def div(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    out = np.full(np.broadcast(a, b).shape, np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def metrics(tp, fp, fn, tn):
    """Arrays of counts (any shape) -> dict of metric arrays (nan = undefined)."""
    return {
        'precision': div(tp, tp + fp),
        'recall': div(tp, tp + fn),
        'f1': div(2 * tp, 2 * tp + fp + fn),
        'specificity': div(tn, tn + fp),
    }


def nanmean_rows(x):
    """Mean over the last axis ignoring nan; nan where all are nan."""
    ok = ~np.isnan(x)
    cnt = ok.sum(axis=-1)
    s = np.where(ok, x, 0.0).sum(axis=-1)
    return div(s, cnt)


def mulberry32_stream(seed, count):
    a = seed & M32
    out = np.empty(count, dtype=np.uint64)
    for i in range(count):
        a = (a + 0x6D2B79F5) & M32
        t = ((a ^ (a >> 15)) * (1 | a)) & M32
        t = (((t + (((t ^ (t >> 7)) * (61 | t)) & M32)) & M32) ^ t) & M32
        out[i] = (t ^ (t >> 14)) & M32
    return out


def bootstrap(c, idx):
    """idx: (B, n) study indices -> per-resample metrics for observations, macro, micro."""
    counts = {k: v[idx].sum(axis=1).astype(float) for k, v in c.items()}  # (B, 14)
    per = metrics(counts['tp'], counts['fp'], counts['fn'], counts['tn'])
    macro = {k: nanmean_rows(v) for k, v in per.items()}
    pooled = {k: v.sum(axis=1) for k, v in counts.items()}
    micro = metrics(pooled['tp'], pooled['fp'], pooled['fn'], pooled['tn'])
    return per, macro, micro


def interval(values):
    v = values[~np.isnan(values)]
    if v.size == 0:
        return {'low': None, 'high': None, 'defined': 0}
    lo, hi = np.percentile(v, [2.5, 97.5])
    return {'low': float(lo), 'high': float(hi), 'defined': int(v.size)}


def num(x):
    return None if np.isnan(x) else float(x)


def main():
    ref, gen = synth()
    os.makedirs(OUT, exist_ok=True)
    for name, arr in (('reference.csv', ref), ('generated.csv', gen)):
        with open(os.path.join(OUT, name), 'w', newline='') as f:
            w = csv.writer(f, lineterminator='\n')
            w.writerow(['image'] + OBSERVATIONS)
            for i in range(N):
                w.writerow([f'images/study{i + 1:04d}.png'] + ['' if np.isnan(x) else str(int(x)) for x in arr[i]])

    c = cells(ref, gen)
    counts = {k: v.sum(axis=0) for k, v in c.items()}
    excluded = N - sum(counts.values())
    per = metrics(counts['tp'], counts['fp'], counts['fn'], counts['tn'])
    per_obs = {}
    for j, o in enumerate(OBSERVATIONS):
        per_obs[o] = {
            'counts': {k: int(counts[k][j]) for k in ('tp', 'fp', 'fn', 'tn')} | {'excluded': int(excluded[j])},
            'support': int(counts['tp'][j] + counts['fn'][j]),
            **{k: num(v[j]) for k, v in per.items()},
        }
    macro = {k: num(nanmean_rows(v)) for k, v in per.items()}
    pooled = {k: v.sum() for k, v in counts.items()}
    micro = {k: num(v) for k, v in metrics(pooled['tp'], pooled['fp'], pooled['fn'], pooled['tn']).items()}

    # Same draws as bootstrap.ts: resample-major, floor(u32 * n / 2^32).
    stream = mulberry32_stream(SEED, RESAMPLES * N)
    idx_same = ((stream * np.uint64(N)) >> np.uint64(32)).astype(np.int64).reshape(RESAMPLES, N)
    idx_np = np.random.default_rng(SEED).integers(0, N, size=(RESAMPLES, N))
    cis = {}
    for tag, idx in (('same_stream', idx_same), ('numpy', idx_np)):
        bper, bmacro, bmicro = bootstrap(c, idx)
        cis[tag] = {
            'perObservation': {o: {k: interval(v[:, j]) for k, v in bper.items()} for j, o in enumerate(OBSERVATIONS)},
            'macro': {k: interval(v) for k, v in bmacro.items()},
            'micro': {k: interval(v) for k, v in bmicro.items()},
        }

    goldens = {
        'about': 'tools/reference/eval_metrics.py (numpy); see its docstring for the protocol',
        'studies': N,
        'resamples': RESAMPLES,
        'seed': SEED,
        'level': 0.95,
        'perObservation': per_obs,
        'macro': macro,
        'micro': micro,
        'intervals': cis,
        'mulberry32First': [int(x) for x in stream[:5]],
    }
    with open(os.path.join(OUT, 'goldens.json'), 'w') as f:
        json.dump(goldens, f, indent=1)
        f.write('\n')
    print(f'wrote {OUT}: {N} studies; macro F1 {macro["f1"]:.4f}, micro F1 {micro["f1"]:.4f}')


if __name__ == '__main__':
    main()

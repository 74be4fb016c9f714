"""Slow, obviously-correct metric references written from the definitions (float64, loops)."""

from __future__ import annotations


def ranked_top_k(row_scores, row_labels, k):
    """The k highest-scoring (score, label, class) of one video; no ties expected."""
    classes = sorted(range(len(row_scores)), key=lambda c: -row_scores[c])[:k]
    return [(float(row_scores[c]), float(row_labels[c]), c) for c in classes]


def ap_of_pairs(pairs, total_positives):
    """AP of (score, label) pairs ranked by score, with an explicit denominator."""
    if total_positives == 0:
        return 0.0
    ranked = sorted(pairs, key=lambda pair: -pair[0])
    hits, total = 0, 0.0
    for rank, (_, label) in enumerate(ranked, start=1):
        if label > 0:
            hits += 1
            total += hits / rank
    return total / total_positives


def reference_gap(P, Y, k):
    pairs = []
    for v in range(len(P)):
        pairs += [(s, l) for s, l, _ in ranked_top_k(P[v], Y[v], k)]
    positives = sum(1 for row in Y for y in row if y > 0)
    return ap_of_pairs(pairs, positives)


def reference_class_aps(P, Y, k):
    num_classes = len(P[0])
    lists = [[] for _ in range(num_classes)]
    for v in range(len(P)):
        for s, l, c in ranked_top_k(P[v], Y[v], k):
            lists[c].append((s, l))
    aps = []
    for c in range(num_classes):
        positives = sum(1 for v in range(len(P)) if Y[v][c] > 0)
        aps.append(ap_of_pairs(lists[c], positives))
    return aps


def reference_hit_at_one(P, Y):
    hits = 0
    for v in range(len(P)):
        best = 0
        for c in range(len(P[v])):
            if P[v][c] > P[v][best]:
                best = c
        hits += Y[v][best] > 0
    return hits / len(P)


def reference_perr(P, Y):
    total = 0.0
    for v in range(len(P)):
        n = sum(1 for y in Y[v] if y > 0)
        if n == 0:
            continue  # counts as 0 but stays in the denominator
        top = sorted(range(len(P[v])), key=lambda c: -P[v][c])[:n]
        total += sum(1 for c in top if Y[v][c] > 0 and P[v][c] > 0) / n
    return total / len(P)

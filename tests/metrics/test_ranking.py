import numpy as np
import torch

from videopool.metrics.ranking import descending_score_key, ranked_labels, stable_top_k


def test_stable_top_k_matches_sorted_with_index_tie_break():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((200, 9)), 1).astype(np.float32)  # ties everywhere, also at the k-th place
    for k in (1, 3, 8, 9, 12):
        values, indices = stable_top_k(torch.from_numpy(scores), k)
        for row in range(len(scores)):
            expected = sorted(range(9), key=lambda c: (-scores[row, c], c))[: min(k, 9)]
            assert indices[row].tolist() == expected
            assert values[row].tolist() == scores[row, expected].tolist()


def test_descending_key_orders_signed_values_and_zeros():
    values = np.array([0.5, -0.0, -2.5, np.inf, 0.0, -np.inf, 1e-30, -1e-30, 3.0], dtype=np.float32)
    keys = descending_score_key(values)
    order = np.argsort(keys, kind="stable")
    assert values[order].tolist() == sorted(values.tolist(), reverse=True)
    assert keys[1] == keys[4]  # -0.0 and +0.0 are equal scores


def test_ranked_labels_put_negatives_first_on_ties():
    scores = np.array([0.3, 0.9, 0.3, 0.9, 0.1])
    labels = np.array([1, 1, 0, 0, 1])
    assert ranked_labels(scores, labels).tolist() == [False, True, False, True, True]

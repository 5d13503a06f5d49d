"""The training stream's file order: every shard once per epoch, a new seeded order each epoch."""

from __future__ import annotations

from collections import Counter

from hmss_ray.data.stream import epoch_order

PATHS = [f"train/part-{i:05d}.parquet" for i in range(7)]


def test_every_shard_is_read_once_per_epoch():
    order = epoch_order(PATHS, epochs=4, seed=0)
    assert len(order) == 4 * len(PATHS)
    for epoch in range(4):
        assert sorted(order[epoch * 7 : (epoch + 1) * 7]) == PATHS
    assert Counter(order) == dict.fromkeys(PATHS, 4)


def test_each_epoch_has_its_own_order_and_the_seed_fixes_them():
    order = epoch_order(PATHS, epochs=3, seed=1)
    epochs = [order[i * 7 : (i + 1) * 7] for i in range(3)]
    assert len({tuple(e) for e in epochs}) == 3  # shuffled anew every epoch
    assert epoch_order(PATHS, epochs=3, seed=1) == order
    assert epoch_order(PATHS, epochs=3, seed=2) != order

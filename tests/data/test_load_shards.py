"""Training over many shards keeps resident memory, open files and memory maps flat (docs/reliability.md,
section 5), scaled down; the full run: ``benchmarks/bench_load.py train`` (1,000 shards)."""

from benchmarks import bench_load


def test_training_over_many_shards_keeps_memory_flat(tmp_path):
    result = bench_load.train_over_shards(shards=120, videos_per_shard=2, steps=60, batch=8, workdir=str(tmp_path),
                                          log_every=5, num_frames=8, frames=(3, 8))
    assert result["shards"] == 120 and result["epochs"] == 2
    flat = bench_load.flatness(result["curve"], skip_until_step=15)  # after half an epoch
    assert flat["to_step"] == 60
    assert flat["growth_mb"] < 16, result["curve"]
    # No descriptor kept per shard (a leak would grow by one per shard, 120 here); the writes of a run (a checkpoint,
    # the log, TensorBoard's thread) hold one or two open for a moment, and a sample may catch them.
    assert max(flat["fds"]) - min(flat["fds"]) <= 3, result["curve"]
    # No memory map kept per shard (a leak would add about 90 over the sampled steps); one thread starting
    # mid-run (TensorBoard's writer, a loader) adds its stack, guard page and malloc arena: ~5 maps.
    assert flat["maps_range"][1] - flat["maps_range"][0] <= 12, result["curve"]

"""Activation shards on disk and the shuffled streams that feed the trainer."""
import json

import pytest
import torch

from comfyui_sae_steering.sae.activation_shards import MANIFEST, ActivationShards, ShardWriter, prompts_digest
from comfyui_sae_steering.sae.shard_stream import ShardStream
from train_data import IDENTITY, write_shards


def test_shards_and_manifest_round_trip(tmp_path):
    stored = write_shards(tmp_path)
    shards = ActivationShards.open(tmp_path)
    assert (shards.d_in, shards.dtype, shards.total_tokens) == (32, torch.float16, 4400)
    assert [f.path.name for f in shards.files] == [f"shard-0000{i}.safetensors" for i in range(4)]
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert {k: manifest[k] for k in IDENTITY} == IDENTITY
    assert manifest["model"] == "synthetic" and manifest["total_tokens"] == 4400
    assert [s["tokens"] for s in manifest["shards"]] == [1000, 1500, 700, 1200]
    assert torch.equal(torch.cat([shards.read(i, 0, f.tokens) for i, f in enumerate(shards.files)]), stored)
    assert torch.equal(shards.read(1, 10, 20), stored[1010:1020])


def test_a_harvest_of_another_site_or_width_is_refused_and_nothing_overwritten(tmp_path):
    write_shards(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for change in ({"site": "single.out"}, {"d_in": 64}, {"block": 0}, {"dtype": "bf16"}):
        with pytest.raises(ValueError, match="another harvest.*nothing was overwritten"):
            ShardWriter(tmp_path, {**IDENTITY, **change})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_resumed_harvest_skips_shards_of_the_same_prompts_and_refuses_other_prompts(tmp_path):
    write_shards(tmp_path)
    writer = ShardWriter(tmp_path, IDENTITY)
    assert writer.done(0, prompts_digest(["prompt 0"]))
    assert not writer.done(7, prompts_digest(["prompt 7"]))
    with pytest.raises(ValueError, match="other prompts"):
        writer.done(1, prompts_digest(["something else"]))


def test_corrupt_shard_is_named(tmp_path):
    write_shards(tmp_path)
    (tmp_path / "shard-00002.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="shard-00002.safetensors: not a readable safetensors file"):
        ActivationShards.open(tmp_path)


def test_shard_of_another_width_is_named(tmp_path):
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(5, 32)}, str(tmp_path / "a.safetensors"))
    save_file({"x": torch.zeros(5, 16)}, str(tmp_path / "b.safetensors"))
    with pytest.raises(ValueError, match=r"disagree on the width: \[16, 32\]"):
        ActivationShards.open(tmp_path)


def test_shard_that_disagrees_with_the_manifest_is_named(tmp_path):
    write_shards(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["shards"][3]["tokens"] = 999
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="shard-00003.safetensors: holds 1200 tokens but manifest.json lists 999"):
        ActivationShards.open(tmp_path)


def test_any_folder_of_single_tensor_safetensors_is_read(tmp_path):
    from safetensors.torch import save_file
    save_file({"hidden": torch.arange(12.0).reshape(4, 3)}, str(tmp_path / "part1.safetensors"))
    shards = ActivationShards.open(tmp_path)
    assert (shards.d_in, shards.total_tokens, shards.manifest) == (3, 4, {})
    assert torch.equal(shards.read(0, 1, 3), torch.arange(3.0, 9.0).reshape(2, 3))


def _rows(t):
    return sorted(map(tuple, t.float().tolist()))


@pytest.mark.parametrize("streams", [1, 3])
def test_one_epoch_of_the_streams_is_every_token_once_shuffled_across_shards(tmp_path, streams):
    stored = write_shards(tmp_path)
    shards = ActivationShards.open(tmp_path)
    feeds = [ShardStream(shards, s, streams, seed=5, block_tokens=300, buffer_blocks=3) for s in range(streams)]
    sizes = []
    for feed in feeds:  # a stream's epoch is its blocks; measure it by reading up to the epoch boundary
        groups = feed._groups(0)
        sizes.append(sum(stop - start for group in groups for _, start, stop in group))
    assert sum(sizes) == stored.shape[0]
    seen = torch.cat([feed.take(n) for feed, n in zip(feeds, sizes)])
    assert _rows(seen) == _rows(stored)
    shard_of = {row: i for i, (a, b) in enumerate([(0, 1000), (1000, 2500), (2500, 3200), (3200, 4400)])
                for row in map(tuple, stored[a:b].float().tolist())}
    for feed in feeds:  # every stream's first buffer mixes tokens of several shards
        head = ShardStream(shards, feed.stream, streams, seed=5, block_tokens=300, buffer_blocks=3).take(600)
        assert len({shard_of[row] for row in map(tuple, head.float().tolist())}) > 1
    assert all(feed.epoch == 1 and feed.offset == 0 for feed in feeds)


def test_seek_lands_where_reading_got_to(tmp_path):
    write_shards(tmp_path)
    shards = ActivationShards.open(tmp_path)
    read = ShardStream(shards, 1, 2, seed=3, block_tokens=256, buffer_blocks=2)
    read.take(5000)  # past the end of the stream's first epoch
    expected = read.take(700)
    jumped = ShardStream(shards, 1, 2, seed=3, block_tokens=256, buffer_blocks=2)
    jumped.seek(5000)
    assert torch.equal(jumped.take(700), expected)


def test_streams_read_disjoint_blocks_and_other_seeds_reorder(tmp_path):
    write_shards(tmp_path)
    shards = ActivationShards.open(tmp_path)
    a = ShardStream(shards, 0, 2, seed=0, block_tokens=500)
    b = ShardStream(shards, 1, 2, seed=0, block_tokens=500)
    assert not set(map(tuple, a._groups(0)[0])) & set(map(tuple, b._groups(0)[0]))
    c = ShardStream(shards, 0, 2, seed=1, block_tokens=500)
    assert not torch.equal(a.take(100), c.take(100))


def test_too_few_blocks_for_the_streams_is_a_clear_error(tmp_path):
    write_shards(tmp_path, tokens_per_shard=(100,))
    with pytest.raises(ValueError, match="1 blocks of 8192 tokens cannot feed 2 streams"):
        ShardStream(ActivationShards.open(tmp_path), 0, 2, seed=0)

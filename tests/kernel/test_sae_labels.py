"""Feature labels: read from a file beside any SAE, used by name in ``features``, errors that help."""
from __future__ import annotations

import json

import pytest

from comfyui_sae_steering.harness.sae_factory import random_sae
from comfyui_sae_steering.nodes.steer.feature_spec import parse_features
from comfyui_sae_steering.sae import load_sae
from comfyui_sae_steering.sae.formats import pack
from comfyui_sae_steering.sae.labels import describe, feature_by_label, labels_file_for, labels_target_for, read_labels, write_labels

LABELS = {37: "blue", 5: "red", 9: "circle"}


def test_labels_by_name_and_index_mix():
    assert parse_features("blue:2.0, red:-1, 9", 0.5, d_sae=64, labels=LABELS) == [(37, 2.0), (5, -1.0), (9, 0.5)]
    assert parse_features("BLUE", 3.0, labels=LABELS) == [(37, 3.0)]


def test_unknown_label_lists_the_nearest():
    with pytest.raises(ValueError, match=r"no feature is labelled 'bleu'; nearest labels: blue") as err:
        parse_features("bleu:2", 1.0, labels=LABELS)
    assert "\n" not in str(err.value)


def test_label_without_labels_says_how_to_add_them():
    with pytest.raises(ValueError, match=r"has no labels .*\.labels\.json"):
        feature_by_label("blue", {})


def test_describe_puts_labels_next_to_indices():
    assert describe(37, LABELS) == "37 (blue)" and describe(3, LABELS) == "3"


def _write_sae(path, d_in=8, d_sae=64):
    pack.write(random_sae(d_in=d_in, d_sae=d_sae, k=4), path)


def test_load_sae_reads_stem_labels_file(tmp_path):
    _write_sae(tmp_path / "mine.safetensors")
    (tmp_path / "mine.labels.json").write_text(json.dumps({"37": "blue", "5": "red"}))
    sae = load_sae(tmp_path / "mine.safetensors")
    assert sae.labels == {37: "blue", 5: "red"}


def test_folder_labels_json_belongs_to_a_folder_layout_and_stem_file_wins(tmp_path):
    _write_sae(tmp_path / "mine.safetensors")
    (tmp_path / "labels.json").write_text(json.dumps({"1": "folder"}))
    assert labels_file_for(tmp_path / "mine.safetensors") is None  # among single files: nobody's
    (tmp_path / "config.json").write_text("{}")
    assert labels_file_for(tmp_path / "mine.safetensors") == tmp_path / "labels.json"
    assert labels_file_for(tmp_path) == tmp_path / "labels.json"
    (tmp_path / "config.json").unlink()
    (tmp_path / "mine.labels.json").write_text(json.dumps({"2": "stem"}))
    assert load_sae(tmp_path / "mine.safetensors").labels == {2: "stem"}


def test_no_labels_file_means_no_labels(tmp_path):
    _write_sae(tmp_path / "mine.safetensors")
    assert load_sae(tmp_path / "mine.safetensors").labels == {}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"x": "blue"}', '{"3": ""}', '{"3": 7}', '{"999": "far"}'])
def test_malformed_labels_file_is_a_one_line_error_naming_it(tmp_path, content):
    _write_sae(tmp_path / "mine.safetensors")
    bad = tmp_path / "mine.labels.json"
    bad.write_text(content)
    with pytest.raises(ValueError) as err:
        load_sae(tmp_path / "mine.safetensors")
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    bad.unlink()  # removing the file is what makes the SAE load again
    assert load_sae(tmp_path / "mine.safetensors").labels == {}




def test_labels_are_written_where_they_are_read(tmp_path):
    """A single weights file: <stem>.labels.json; weights with a config beside them, or a folder: labels.json;
    a file that already exists is the target. What is written reads back."""
    single = tmp_path / "single" / "sae.safetensors"
    single.parent.mkdir()
    single.write_bytes(b"")
    assert labels_target_for(single) == single.with_name("sae.labels.json")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "cfg.json").write_text("{}")
    (folder / "sae.safetensors").write_bytes(b"")
    assert labels_target_for(folder / "sae.safetensors") == folder / "labels.json"
    assert labels_target_for(folder) == folder / "labels.json"
    existing = single.with_name("sae.labels.json")
    write_labels(existing, {3: "blue", 1: "red"})
    assert labels_target_for(single) == existing and labels_file_for(single) == existing
    assert read_labels(existing, 8) == {1: "red", 3: "blue"}

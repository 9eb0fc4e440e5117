"""``GET /sae_steering/features`` (the feature picker's data) on the real server: only names the SAE
folders list are served (``../`` and absolute names are 404 JSON, like unknown ones), labels come from
the labels file beside the SAE, and measured means are those of the latest Feature Scan on that file."""
import json
import re
import urllib.parse

import pytest
from safetensors.torch import save_file

from comfyui_sae_steering.harness.e2e_models import (PLACEHOLDER_SAE_FILES, TINY_SAE_FEATURES, TINY_SAE_K, TINY_SAE_NAME,
                                                    TINY_SAE_WIDTH, tiny_topk_tensors)
from comfyui_sae_steering.harness.workflow_api import api_node

LABELLED, UNLABELLED = "picker_labelled", "picker_unlabelled"  # the same tensors in two folders
TOP_N = 8


def features(server, name):
    status, raw = server._request("/sae_steering/features?sae=" + urllib.parse.quote(name))
    body = raw.decode()
    assert "Traceback" not in body and 'File "' not in body, body
    return status, json.loads(body)


def write_sae(server, folder):
    path = server.models / "sae" / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"features": TINY_SAE_WIDTH, "pages": TINY_SAE_FEATURES,
                                                  "k": TINY_SAE_K}))
    save_file(tiny_topk_tensors(), str(path / "model.safetensors"))
    return path


@pytest.fixture(scope="module")
def picker_saes(comfy_server):
    return {folder: write_sae(comfy_server, folder) for folder in (LABELLED, UNLABELLED)}


@pytest.mark.parametrize("name", [
    "../comfyui.log", "../../../../etc/passwd", f"{TINY_SAE_NAME}/../{TINY_SAE_NAME}/model.safetensors",
    "..\\comfyui.log", "/etc/passwd", "ABSOLUTE"])
def test_names_outside_the_sae_folders_are_404_json(comfy_server, name):
    if name == "ABSOLUTE":  # an absolute path to a real SAE inside the folder is still refused
        name = str(comfy_server.models / "sae" / TINY_SAE_NAME / "model.safetensors")
    status, body = features(comfy_server, name)
    assert status == 404 and set(body) == {"error"}, body


def test_unknown_name_is_404_json(comfy_server):
    status, body = features(comfy_server, "no_such_sae.safetensors")
    assert status == 404 and "no_such_sae.safetensors" in body["error"]
    status, body = features(comfy_server, "")
    assert status == 404 and "error" in body


def test_unreadable_sae_is_a_json_error(comfy_server):
    status, body = features(comfy_server, PLACEHOLDER_SAE_FILES[0])  # an empty placeholder file
    assert status == 422 and PLACEHOLDER_SAE_FILES[0] in body["error"]


def test_unmeasured_sae_without_labels_lists_nothing_but_its_size(comfy_server):
    status, body = features(comfy_server, f"{TINY_SAE_NAME}/model.safetensors")
    assert status == 200
    assert body["d_sae"] == TINY_SAE_FEATURES and body["features"] == [] and body["labels_file"] is None
    assert body["measured_by"] is None and body["warnings"] == []


def test_labels_file_in_the_sae_folder_and_beside_the_weights(comfy_server, picker_saes):
    folder = picker_saes[LABELLED]
    name = f"{LABELLED}/model.safetensors"
    (folder / "labels.json").write_text(json.dumps({"5": "fox fur", "7": "snow"}))
    status, body = features(comfy_server, name)
    assert status == 200 and body["labels_file"] == "labels.json"
    assert [(row["index"], row["label"]) for row in body["features"]] == [(5, "fox fur"), (7, "snow")]
    assert body["warnings"] == []
    beside = folder / "model.labels.json"  # <stem>.labels.json wins over the folder's labels.json
    beside.write_text(json.dumps({"11": "pine trees"}))
    try:
        status, body = features(comfy_server, name)
        assert body["labels_file"] == "model.labels.json"
        assert [(row["index"], row["label"]) for row in body["features"]] == [(11, "pine trees")]
    finally:
        beside.unlink()
    # a malformed labels file is the same one-line error Load SAE gives, naming the file (sae/labels.py)
    for bad in ("{not json", json.dumps({"x": "bad key"}), json.dumps({str(TINY_SAE_FEATURES): "out of range"})):
        (folder / "labels.json").write_text(bad)
        status, body = features(comfy_server, name)
        assert status == 422 and "labels.json" in body["error"] and "\n" not in body["error"], body
    (folder / "labels.json").write_text(json.dumps({"5": "fox fur", "7": "snow"}))


def test_labels_json_at_the_top_of_an_sae_folder_belongs_to_no_sae(tmp_path):
    from comfyui_sae_steering.sae.labels import labels_file_for

    def labels_file(path):
        found = labels_file_for(path)
        return None if found is None else str(found)

    single = tmp_path / "one.safetensors"
    single.write_bytes(b"")
    (tmp_path / "labels.json").write_text("{}")
    assert labels_file(str(single)) is None
    (tmp_path / "one.labels.json").write_text("{}")
    assert labels_file(str(single)) == str(tmp_path / "one.labels.json")


def scan_prompt(object_info):
    def node(class_type, **inputs):
        return api_node(object_info, class_type, **inputs)

    prompt = {"model": node("SAETestTinyFlux", seed=0), "cond": node("SAETestTinyConditioning", seed=1),
              "latent": node("EmptySD3LatentImage", width=32, height=32, batch_size=1)}
    for folder in (LABELLED, UNLABELLED):
        prompt[f"sae_{folder}"] = node("SAELoader", sae_name=f"{folder}/model.safetensors", dtype="auto")
        prompt[f"scan_{folder}"] = node("SAEFeatureScan", model=["model", 0], sae=[f"sae_{folder}", 0],
                                        positive=["cond", 0], latent=["latent", 0], site="double.img.out", block=0,
                                        tokens="image", steps=2, seed=0, top_n=TOP_N)
        prompt[f"table_{folder}"] = node("PreviewAny", source=[f"scan_{folder}", 0])
    return prompt


def table_means(text: str) -> dict[int, float]:
    """feature -> mean from the scan's table (rank, feature, mean, freq, max)."""
    rows = [line.split() for line in text.splitlines() if re.match(r"^\s*\d+\s+\d+\s", line)]
    return {int(row[1]): float(row[2]) for row in rows}


def test_measured_means_after_a_feature_scan(comfy_server, object_info, picker_saes):
    (picker_saes[LABELLED] / "labels.json").write_text(json.dumps({"5": "fox fur", "7": "snow"}))
    entry = comfy_server.run_prompt(scan_prompt(object_info), timeout_s=300)
    assert entry["status"]["status_str"] == "success", entry["status"]
    listed = {}
    for folder in (LABELLED, UNLABELLED):
        status, body = features(comfy_server, f"{folder}/model.safetensors")
        assert status == 200 and body["measured_by"] == "SAE Feature Scan at double.img.out block 0"
        assert body["measured_tokens"] > 0
        listed[folder] = body["features"]
        table = table_means(entry["outputs"][f"table_{folder}"]["text"][0])
        assert len(table) == TOP_N
        means = {row["index"]: row["mean"] for row in body["features"]}
        # the route's top features and means are the scan's (its table prints 5 significant digits)
        assert [row["index"] for row in body["features"][:TOP_N]] == list(table)
        for feature, mean in table.items():
            assert float(f"{means[feature]:.5g}") == mean
        assert [row["mean"] for row in body["features"]] == sorted(means.values(), reverse=True)
        assert all(0 <= row["frequency"] <= 1 and row["max"] >= row["mean"] for row in body["features"])
    # no labels: the same features with their measured means; labels only add names (and unfired labelled rows)
    assert all(row["label"] is None for row in listed[UNLABELLED])
    assert all(row["mean"] > 0 for row in listed[UNLABELLED])
    labelled = {row["index"]: row for row in listed[LABELLED]}
    for row in listed[UNLABELLED]:
        assert labelled[row["index"]]["mean"] == row["mean"]
    assert labelled[5]["label"] == "fox fur" and labelled[7]["label"] == "snow"
    assert set(labelled) == {row["index"] for row in listed[UNLABELLED]} | {5, 7}

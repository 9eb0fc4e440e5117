"""The example workflows, as the real server serves them to the frontend: well-formed UI JSON,
node types the server knows, and an API form that passes ComfyUI's own prompt validation.

Validation runs ``execution.validate_prompt`` inside the server (the test-only pack's
``/sae_e2e/validate`` route) instead of ``POST /prompt``: the workflows name real model files that
are empty placeholders here, and a queued prompt would go on to execute them.
"""
import io
import json
import uuid

import pytest
from PIL import Image

from comfyui_sae_steering.harness.comfyui_locator import PACK_ROOT
from comfyui_sae_steering.harness.e2e_models import PLACEHOLDER_IMAGE, PLACEHOLDER_MODELS, PLACEHOLDER_SAE_FILES, PLACEHOLDER_SAE_FOLDERS
from comfyui_sae_steering.harness.workflow_api import FRONTEND_ONLY, to_api

PACK_FOLDER = "ComfyUI-SAE-Steering"
# workflow -> the pack's nodes it shows (issue 7's four workflows and Tiny World's)
WORKFLOWS = {
    "flux_measure_then_steer": {"SAELoader", "SAEActivationScale", "SAEFluxSteer", "SAEFeatureScan"},
    "flux_clip_pooled_edit": {"SAELoader", "SAEConditioningEdit"},
    "sdxl_revision_clip_vision_edit": {"SAELoader", "SAEClipVisionEdit"},
    "flux_two_sites_step_window": {"SAELoader", "SAEFluxSteer"},
    "tiny_world_steer": {"TinyWorldLoader", "SAEActivationScale", "SAEFluxSteer"},
    "tiny_world_find_mask_erase": {"TinyWorldLoader", "SAEFeatureContrast", "SAEFluxSteer", "SAEConceptErase"},
}
MODEL_FILES = [name for names in PLACEHOLDER_MODELS.values() for name in names] + PLACEHOLDER_SAE_FILES \
    + [f"{folder}/model.safetensors" for folder in PLACEHOLDER_SAE_FOLDERS] + [PLACEHOLDER_IMAGE]


def test_server_lists_exactly_the_example_workflows(comfy_server):
    templates = comfy_server.get("/workflow_templates")
    assert sorted(templates.get(PACK_FOLDER, [])) == sorted(WORKFLOWS)


@pytest.fixture(params=sorted(WORKFLOWS))
def workflow(request, comfy_server):
    name = request.param
    return name, json.loads(comfy_server.fetch(f"/api/workflow_templates/{PACK_FOLDER}/{name}.json"))


def test_thumbnail_is_a_jpeg_of_the_same_name(workflow, comfy_server):
    name, _ = workflow
    image = Image.open(io.BytesIO(comfy_server.fetch(f"/api/workflow_templates/{PACK_FOLDER}/{name}.jpg")))
    assert image.format == "JPEG" and image.width >= 512 and image.height >= 256
    assert (PACK_ROOT / "example_workflows" / f"{name}.jpg").is_file()


def test_workflow_is_well_formed_ui_json(workflow):
    name, ui = workflow
    nodes = {node["id"]: node for node in ui["nodes"]}
    assert len(nodes) == len(ui["nodes"]), "duplicate node ids"
    assert ui["last_node_id"] == max(nodes) and ui["last_link_id"] == max(link[0] for link in ui["links"])
    assert "version" in ui and uuid.UUID(ui["id"])
    for link_id, src, src_slot, dst, dst_slot, kind in ui["links"]:
        assert nodes[dst]["inputs"][dst_slot]["link"] == link_id, (name, link_id)
        assert link_id in nodes[src]["outputs"][src_slot]["links"], (name, link_id)
        assert nodes[src]["outputs"][src_slot]["type"] == kind, (name, link_id)
    linked = {slot["link"] for node in ui["nodes"] for slot in node.get("inputs", []) if slot["link"] is not None}
    assert linked == {link[0] for link in ui["links"]}
    for node in ui["nodes"]:
        assert {"id", "type", "pos", "size", "inputs", "outputs", "widgets_values"} <= set(node), (name, node["id"])


def test_every_node_type_exists_and_the_pack_nodes_are_shown(workflow, object_info):
    name, ui = workflow
    types = {node["type"] for node in ui["nodes"]} - FRONTEND_ONLY
    missing = sorted(types - set(object_info))
    if missing:
        pytest.fail(f"{name} uses node types the server does not know: {missing}")
    assert WORKFLOWS[name] <= types


def test_note_names_every_file_the_workflow_needs(workflow):
    name, ui = workflow
    notes = " ".join(v for node in ui["nodes"] if node["type"] in FRONTEND_ONLY for v in node["widgets_values"])
    used = {v for node in ui["nodes"] if node["type"] not in FRONTEND_ONLY for v in node["widgets_values"]
            if isinstance(v, str) and v in MODEL_FILES}
    if not used:  # Tiny World ships its models: its note must say so
        assert "needs:** none" in notes and any(n["type"] == "TinyWorldLoader" for n in ui["nodes"]), \
            f"{name} names no model file"
    for file in used - {PLACEHOLDER_IMAGE}:
        assert file.split("/")[0] in notes, f"{name}: the note does not say where {file} goes"


def test_api_form_passes_comfyui_prompt_validation(workflow, object_info, comfy_server):
    name, ui = workflow
    prompt = to_api(ui, object_info)
    status, reply = comfy_server.post("/sae_e2e/validate", {"prompt": prompt})
    assert status == 200
    if not reply["valid"] or reply["node_errors"]:
        pytest.fail(f"{name}: {json.dumps(reply['error'])}\n{json.dumps(reply['node_errors'], indent=1)}")
    output_nodes = sorted(i for i, node in prompt.items() if object_info[node["class_type"]]["output_node"])
    assert reply["outputs"] == output_nodes


def test_converter_maps_widgets_in_schema_order(object_info):
    ui = {"nodes": [
        {"id": 3, "type": "KSampler", "inputs": [{"name": "model", "link": 1}, {"name": "positive", "link": 2},
                                                 {"name": "negative", "link": 2}, {"name": "latent_image", "link": 3}],
         "widgets_values": [7, "randomize", 12, 4.5, "euler", "karras", 0.75]},
        {"id": 5, "type": "Note", "widgets_values": ["free text"]},
        {"id": 8, "type": "LoadImage", "inputs": [], "widgets_values": ["example.png", "image"]},
    ], "links": [[1, 10, 0, 3, 0, "MODEL"], [2, 11, 0, 3, 1, "CONDITIONING"], [3, 12, 0, 3, 3, "LATENT"]]}
    assert to_api(ui, object_info) == {
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["10", 0], "seed": 7, "steps": 12, "cfg": 4.5, "sampler_name": "euler", "scheduler": "karras",
            "positive": ["11", 0], "negative": ["11", 0], "latent_image": ["12", 0], "denoise": 0.75}},
        "8": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    }
    with pytest.raises(ValueError, match="left over"):
        to_api({"nodes": [{"id": 1, "type": "VAELoader", "inputs": [], "widgets_values": ["ae.safetensors", 3]}],
                "links": []}, object_info)


def test_committed_workflow_is_what_the_builder_writes_today(workflow, object_info):
    """A node that gains an input leaves old JSON valid but stale: rebuild when this fails."""
    from comfyui_sae_steering.harness.example_workflows import WORKFLOWS as SPECS, build

    name, ui = workflow
    (spec,) = [w for w in SPECS if w.name == name]
    if build(spec, object_info) != ui:
        pytest.fail(f"example_workflows/{name}.json is stale: run .venv/bin/python scripts/build_example_workflows.py")

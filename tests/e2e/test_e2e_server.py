"""The pack inside a real ComfyUI v0.8.0 server: registered, importable, and nothing failed to load."""
import asyncio
import re

import pytest

# node ids that saved workflows refer to (issues 4, 5, 6, 8): a compatibility contract
CONTRACT_NODE_IDS = ["SAELoader", "SAEFluxSteer", "SAEActivationScale", "SAEConditioningEdit", "SAEClipVisionEdit",
                     "SAEFeatureScan", "SAEEmbeddingFeatures"]
PACK_FOLDER = "ComfyUI-SAE-Steering"


def pack_node_ids():
    import comfyui_sae_steering

    extension = asyncio.run(comfyui_sae_steering.comfy_entrypoint())
    return [node.GET_SCHEMA().node_id for node in asyncio.run(extension.get_node_list())]


def test_object_info_lists_every_node_of_the_pack(object_info):
    ids = pack_node_ids()
    assert ids, "the pack's extension lists no nodes"
    missing = [node_id for node_id in ids if node_id not in object_info]
    if missing:
        pytest.fail(f"/object_info lacks the pack's nodes {missing}")
    for node_id in ids:
        assert object_info[node_id]["python_module"] == f"custom_nodes.{PACK_FOLDER}", node_id


@pytest.mark.parametrize("node_id", CONTRACT_NODE_IDS)
def test_contract_node_is_served(object_info, node_id):
    if node_id not in object_info:
        pytest.fail(f"{node_id} is not registered by the pack")
    assert object_info[node_id]["python_module"] == f"custom_nodes.{PACK_FOLDER}"


def test_log_shows_both_packs_imported(comfy_server, object_info):
    log = comfy_server.log()
    startup = log.split("Starting server")[0]
    for folder in (PACK_FOLDER, "sae_e2e_test_nodes"):
        times = re.findall(rf"^.*seconds.*custom_nodes/{re.escape(folder)}$", startup, flags=re.MULTILINE)
        assert len(times) == 1, f"no import-time line for {folder} in the log:\n{startup[-3000:]}"
        assert "IMPORT FAILED" not in times[0], times[0]
        frames = [line for line in startup.splitlines()
                  if line.lstrip().startswith("File ") and f"custom_nodes/{folder}/" in line]
        assert not frames, f"a traceback through {folder} at startup:\n" + "\n".join(frames)
    # /object_info (fetched above) logs an error for each node whose schema it cannot describe
    assert "An error occurred while retrieving information" not in log
    assert f"http://127.0.0.1:{comfy_server.port}" in log  # loopback only

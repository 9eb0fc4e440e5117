"""The embedding nodes' ids, input names and defaults are a contract: check them as built."""
import asyncio

import comfyui_sae_steering
from comfyui_sae_steering.nodes.embedding.clip_vision_edit_node import SAEClipVisionEdit
from comfyui_sae_steering.nodes.embedding.conditioning_edit_node import SAEConditioningEdit
from comfyui_sae_steering.nodes.embedding.features_node import SAEEmbeddingFeatures
from comfyui_sae_steering.nodes.steer.feature_spec import MODE_NAMES


def inputs(node):
    return {i.id: i for i in node.define_schema().inputs}


def test_edit_nodes_schema():
    for node, node_id, name, first, targets in [
        (SAEConditioningEdit, "SAEConditioningEdit", "SAE Edit Conditioning", "conditioning",
         ["pooled_output", "tokens"]),
        (SAEClipVisionEdit, "SAEClipVisionEdit", "SAE Edit CLIP Vision", "clip_vision_output",
         ["image_embeds", "last_hidden_state", "penultimate_hidden_states"]),
    ]:
        schema = node.define_schema()
        assert (schema.node_id, schema.display_name) == (node_id, name)
        found = inputs(node)
        assert list(found) == [first, "sae", "target", "features", "strength", "mode", "keep_error"]
        assert found["target"].options == targets
        assert found["mode"].options == MODE_NAMES and found["mode"].default == "set"
        assert found["keep_error"].default is True
        strength = found["strength"]
        assert 10 <= strength.default <= 50 and strength.min <= -50 and strength.max >= 1000
        assert [o.io_type for o in schema.outputs] == [schema.inputs[0].io_type, "STRING"]


def test_lister_schema():
    schema = SAEEmbeddingFeatures.define_schema()
    assert (schema.node_id, schema.display_name) == ("SAEEmbeddingFeatures", "SAE Embedding Features")
    found = inputs(SAEEmbeddingFeatures)
    assert list(found) == ["sae", "conditioning", "clip_vision_output", "target", "top_n"]
    assert found["conditioning"].optional and found["clip_vision_output"].optional
    assert found["top_n"].default == 16
    assert found["target"].options == ["pooled_output", "tokens", "image_embeds", "last_hidden_state",
                                       "penultimate_hidden_states"]
    assert [o.io_type for o in schema.outputs] == ["STRING", "STRING"]


def test_extension_registers_the_embedding_nodes():
    extension = asyncio.run(comfyui_sae_steering.comfy_entrypoint())
    nodes = asyncio.run(extension.get_node_list())
    assert {SAEConditioningEdit, SAEClipVisionEdit, SAEEmbeddingFeatures} <= set(nodes)


def test_comfyui_accepts_the_schemas():
    for node in (SAEConditioningEdit, SAEClipVisionEdit, SAEEmbeddingFeatures):
        node.VALIDATE_CLASS()
        info = node.GET_NODE_INFO_V1()
        assert info["name"] == node.define_schema().node_id
        assert "sae" in info["input"]["required"]

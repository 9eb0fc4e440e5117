"""A real run through the server: ``POST /prompt`` -> ``/history``, the tiny FLUX from the test-only
node, the tiny SAE from the temporary ``models/sae``; unsteered, steered and strength-0 branches."""
import pytest
import torch
from safetensors.torch import load_file

from comfyui_sae_steering.harness.e2e_models import TINY_SAE_NAME, tiny_topk_tensors
from comfyui_sae_steering.harness.workflow_api import api_node, combo_options

FEATURE, STRENGTH, BLOCK = 5, 8.0, 0
STEPS, SEED = 3, 0


def steering_prompt(object_info, sae_name):
    def node(class_type, **inputs):
        return api_node(object_info, class_type, **inputs)

    def steer(strength):
        return node("SAEFluxSteer", model=["model", 0], sae=["sae", 0], site="double.img.out", block=BLOCK,
                    tokens="image", features=str(FEATURE), strength=strength, mode="add", keep_error=True,
                    start_percent=0.0, end_percent=1.0, apply_to="both")

    def ksampler(model):
        return node("KSampler", model=[model, 0], seed=SEED, steps=STEPS, cfg=1.0, sampler_name="euler",
                    scheduler="simple", positive=["cond", 0], negative=["cond", 0], latent_image=["latent", 0],
                    denoise=1.0)

    prompt = {
        "model": node("SAETestTinyFlux", seed=0),
        "cond": node("SAETestTinyConditioning", seed=1),
        "latent": node("EmptySD3LatentImage", width=32, height=32, batch_size=1),
        "sae": node("SAELoader", sae_name=sae_name, dtype="auto"),
        "steer": steer(STRENGTH),
        "steer0": steer(0.0),
    }
    for branch, model in (("unsteered", "model"), ("steered", "steer"), ("zero", "steer0")):
        prompt[f"sample_{branch}"] = ksampler(model)
        prompt[f"save_{branch}"] = node("SaveLatent", samples=[f"sample_{branch}", 0],
                                        filename_prefix=f"sae_e2e/{branch}")
    return prompt


def execution_errors(entry) -> str:
    errors = [body for kind, body in entry["status"]["messages"] if kind == "execution_error"]
    return "; ".join(f"{e['node_type']} ({e['node_id']}): {e['exception_type']}: {e['exception_message']}"
                     for e in errors) or str(entry["status"])


def saved_latent(server, entry, node_id):
    (saved,) = entry["outputs"][node_id]["latents"]
    return load_file(str(server.output / saved["subfolder"] / saved["filename"]))["latent_tensor"]


@pytest.fixture(scope="module")
def run(comfy_server, object_info):
    sae_name = f"{TINY_SAE_NAME}/model.safetensors"
    assert sae_name in combo_options(object_info["SAELoader"]["input"]["required"]["sae_name"])
    entry = comfy_server.run_prompt(steering_prompt(object_info, sae_name), timeout_s=300)
    if entry["status"]["status_str"] != "success":
        pytest.fail(f"the run failed: {execution_errors(entry)}")
    return {branch: saved_latent(comfy_server, entry, f"save_{branch}") for branch in ("unsteered", "steered", "zero")}


def reference_latent(steer_feature_by=None):
    """The same sampling in this process; optionally adding ``steer_feature_by`` x decoder row of
    FEATURE to the image stream after double block BLOCK, written here with ComfyUI's own patch API."""
    from comfyui_sae_steering.harness.tiny_flux import build_tiny_flux, empty_latent, sample, tiny_conditioning

    model = build_tiny_flux(seed=0)
    if steer_feature_by is not None:
        direction = tiny_topk_tensors()["decoder.weight"][:, FEATURE]  # finebooru: decoder [d_in, d_sae]

        def add_direction(args, extra):
            out = extra["original_block"](args)
            return {**out, "img": out["img"] + steer_feature_by * direction.to(out["img"])}

        model = model.clone()
        model.set_model_patch_replace(add_direction, "dit", "double_block", BLOCK)
    cond = tiny_conditioning(seed=1)
    return sample(model, cond, cond, latent=empty_latent(32, 32), steps=STEPS, cfg=1.0, seed=SEED)


def test_unsteered_branch_matches_in_process_sampling(run):
    torch.testing.assert_close(run["unsteered"], reference_latent())


def test_steered_branch_matches_an_independent_add(run):
    assert not torch.equal(run["steered"], run["unsteered"])
    assert (run["steered"] - run["unsteered"]).abs().max() > 1e-2
    torch.testing.assert_close(run["steered"], reference_latent(steer_feature_by=STRENGTH))


def test_strength_zero_is_bit_identical_to_unsteered(run):
    assert torch.equal(run["zero"], run["unsteered"])

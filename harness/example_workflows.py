"""The example workflows (``example_workflows/*.json``, ComfyUI's UI format, what "Save" writes, and a ``.jpg``
thumbnail of each), described compactly below and laid out from the node schemas of a real server.

``scripts/build_example_workflows.py`` writes them; the end-to-end tests check the files against these
descriptions. Widget values are given by input name here and laid out in schema order from
``/object_info``; a name or a combo value the schema does not know stops the build.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .comfyui_locator import PACK_ROOT
from .workflow_api import combo_options, extra_widget_values, has_seed_control, is_widget, schema_inputs, widget_default

OUT = PACK_ROOT / "example_workflows"
FLUX_FILES = """\
**Files this workflow needs** (ComfyUI folders):
- `models/diffusion_models/flux1-dev.safetensors` (FLUX.1-dev)
- `models/text_encoders/clip_l.safetensors` and `t5xxl_fp16.safetensors`
- `models/vae/ae.safetensors` (the FLUX VAE)
"""


@dataclass
class N:
    """One node: ``values`` by input name; a ``(node key, output slot)`` tuple is a link."""
    key: str
    type: str
    pos: tuple[int, int]
    values: dict = field(default_factory=dict)
    title: str | None = None


@dataclass
class Workflow:
    name: str
    title: str
    subtitle: str
    note: str
    nodes: list[N]


def flux_base(prompt: str) -> list[N]:
    return [
        N("unet", "UNETLoader", (0, 0), {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}),
        N("clip", "DualCLIPLoader", (0, 130), {"clip_name1": "clip_l.safetensors",
                                               "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}),
        N("vae", "VAELoader", (0, 300), {"vae_name": "ae.safetensors"}),
        N("pos", "CLIPTextEncode", (380, 0), {"clip": ("clip", 0), "text": prompt}, "Prompt"),
        N("neg", "CLIPTextEncode", (380, 230), {"clip": ("clip", 0), "text": ""}, "Negative (unused at cfg 1)"),
        N("guide", "FluxGuidance", (800, 0), {"conditioning": ("pos", 0), "guidance": 3.5}),
        N("latent", "EmptySD3LatentImage", (380, 430), {"width": 1024, "height": 1024, "batch_size": 1}),
    ]


def sample_and_save(key: str, model, positive, negative, x: int, y: int, prefix: str, title: str,
                    vae=("vae", 0), latent=("latent", 0), steps=20, cfg=1.0, sampler="euler",
                    scheduler="simple") -> list[N]:
    return [
        N(f"{key}_ks", "KSampler", (x, y), {"model": model, "positive": positive, "negative": negative,
                                           "latent_image": latent, "seed": 42, "steps": steps, "cfg": cfg,
                                           "sampler_name": sampler, "scheduler": scheduler, "denoise": 1.0},
          f"KSampler ({title})"),
        N(f"{key}_dec", "VAEDecode", (x + 340, y), {"samples": (f"{key}_ks", 0), "vae": vae}),
        N(f"{key}_save", "SaveImage", (x + 560, y), {"images": (f"{key}_dec", 0), "filename_prefix": prefix},
          f"Save ({title})"),
    ]


def side_by_side(x: int, folder: str, plain: tuple, changed: tuple, **kwargs) -> list[N]:
    """Two sampler branches from the same seed, each ``(label, model, positive)``, saved side by side."""
    return [node for row, (label, model, positive) in enumerate((plain, changed))
            for node in sample_and_save(label, model, positive, ("neg", 0), x, 330 * row, f"{folder}/{label}",
                                        label, **kwargs)]


WORKFLOWS = [
    Workflow(
        "tiny_world_steer",
        "Tiny World: turn red circles blue (runs on a CPU in seconds)",
        "Load Tiny World -> Measure Activation Scale -> SAE Steer FLUX ('blue', x feature mean) -> side by side",
        "# Tiny World: see steering work\n\n"
        "**Files this workflow needs:** none. Load Tiny World loads a tiny FLUX trained on 64x64 coloured shapes, "
        "its VAE, its text encoder and its SAE (image tokens out of the last single block, features labelled red, green, "
        "blue, yellow, circle, square, triangle), all shipped in the pack.\n\n"
        "**How to use.** Queue it: four seeds of 'a red circle' are sampled twice from the same noise, once as "
        "the model draws them and once with the SAE's 'blue' feature added at 4 x its mean activation "
        "(measured on 'a blue circle', where it fires) from 40 % of the sampling on, once the layout is set. "
        "The steered circles turn blue and stay circles. Try "
        "`features` = `square`, `yellow:4, red:-2`, other strengths or modes; the strength guide in the "
        "README quotes the measured success rates.",
        [
            N("world", "TinyWorldLoader", (0, 0), {}),
            N("pos", "CLIPTextEncode", (380, 0), {"clip": ("world", 1), "text": "a red circle"}, "Prompt"),
            N("neg", "CLIPTextEncode", (380, 230), {"clip": ("world", 1), "text": ""}, "Negative (unused at cfg 1)"),
            N("target", "CLIPTextEncode", (380, 430), {"clip": ("world", 1), "text": "a blue circle"},
              "Where the target feature fires (for its mean)"),
            N("latent", "EmptySD3LatentImage", (380, 660), {"width": 64, "height": 64, "batch_size": 4}),
            N("scale", "SAEActivationScale", (800, 0), {
                "model": ("world", 0), "positive": ("target", 0), "latent": ("latent", 0),
                "site": "single.out", "block": 1, "steps": 4, "seed": 42, "cfg": 1.0,
                "sampler_name": "euler", "scheduler": "simple", "sae": ("world", 3)}),
            N("report", "PreviewAny", (800, 420), {"source": ("scale", 1)}, "Scale report"),
            N("steer", "SAEFluxSteer", (1200, 0), {
                "model": ("world", 0), "sae": ("world", 3), "site": "single.out", "block": 1,
                "tokens": "image", "features": "blue", "strength": 4.0, "mode": "add", "keep_error": True,
                "start_percent": 0.4, "end_percent": 1.0, "apply_to": "both", "scale": ("scale", 0),
                "strength_unit": "× feature mean"}),
        ]
        + side_by_side(1600, "tiny_world", ("unsteered", ("world", 0), ("pos", 0)),
                       ("steered", ("steer", 0), ("pos", 0)), vae=("world", 2)),
    ),
    Workflow(
        "tiny_world_find_mask_erase",
        "Tiny World: find a feature, steer one half, erase a colour (runs on a CPU in seconds)",
        "SAE Find Features -> SAE Steer FLUX (left-half mask, schedule) and SAE Erase Concept ('red') -> images",
        "# Tiny World: where, when and what\n\n"
        "**Files this workflow needs:** none (Load Tiny World ships the model, VAE, text encoder and SAE).\n\n"
        "**How to use.** Queue it. SAE Find Features samples the red prompts against the other colours' and "
        "ranks the features that tell them apart (its chart and the `features` line). SAE Steer FLUX adds "
        "'blue' (60 = about 12 x its mean: half the tokens take three times the unmasked strength) only under the left-half mask (two Solid Masks composited), off for the first 40 % of "
        "sampling and fading in by 50 % (`schedule`), once the layout is set. SAE Erase Concept finds the four features "
        "that tell the red prompts from the other colours' and pushes them below zero on every image where they fire "
        "above their level on those prompts (`scope` per image: a colour covers the whole picture). Four seeds of "
        "'a red circle' are saved for each. See docs/steering_controls.md.",
        [
            N("world", "TinyWorldLoader", (0, 0), {}),
            N("pos", "CLIPTextEncode", (380, 0), {"clip": ("world", 1), "text": "a red circle"}, "Prompt"),
            N("neg", "CLIPTextEncode", (380, 230), {"clip": ("world", 1), "text": ""}, "Negative (unused at cfg 1)"),
            N("latent", "EmptySD3LatentImage", (380, 430), {"width": 64, "height": 64, "batch_size": 4}),
            N("find", "SAEFeatureContrast", (800, 0), {
                "model": ("world", 0), "sae": ("world", 3), "latent": ("latent", 0), "site": "single.out",
                "block": 1, "tokens": "image", "steps": 4, "seed": 0, "cfg": 1.0, "sampler_name": "euler",
                "scheduler": "simple", "top_n": 8, "rank_by": "normalised difference", "strength": 1.0,
                "clip": ("world", 1), "concept_prompts": "a red circle\na red square\na red triangle",
                "neutral_prompts": "a blue circle\na green square\na yellow triangle", "label": "",
                "write_label": False}),
            N("chart", "PreviewImage", (800, 620), {"images": ("find", 1)}, "Ranked features"),
            N("found", "PreviewAny", (1200, 620), {"source": ("find", 2)}, "Report"),
            N("blank", "SolidMask", (0, 330), {"value": 0.0, "width": 64, "height": 64}),
            N("half", "SolidMask", (0, 470), {"value": 1.0, "width": 32, "height": 64}),
            N("mask", "MaskComposite", (0, 610), {"destination": ("blank", 0), "source": ("half", 0), "x": 0, "y": 0,
                                                  "operation": "add"}, "Left half"),
            N("steer", "SAEFluxSteer", (1200, 0), {
                "model": ("world", 0), "sae": ("world", 3), "site": "single.out", "block": 1,
                "tokens": "image", "features": "blue", "strength": 60.0, "mode": "add", "keep_error": True,
                "start_percent": 0.0, "end_percent": 1.0, "apply_to": "both", "strength_unit": "absolute",
                "mask": ("mask", 0), "schedule": "0:0, 0.4:0, 0.5:1, 1:1"}),
            N("erase", "SAEConceptErase", (1200, 360), {
                "model": ("world", 0), "sae": ("world", 3), "site": "single.out", "block": 1, "tokens": "image",
                "features": "", "multiplier": 1.0, "push_to": "−multiplier × feature mean",
                "threshold": "neutral mean", "threshold_value": 0.0, "apply_to": "both", "top_n": 4,
                "latent": ("latent", 0), "clip": ("world", 1),
                "concept_prompts": "a red circle\na red square\na red triangle",
                "neutral_prompts": "\n".join(f"a {c} {s}" for c in ("green", "blue", "yellow")
                                             for s in ("circle", "square", "triangle")),
                "steps": 8, "seed": 0, "scope": "per image", "start_percent": 0.0, "end_percent": 1.0}),
            N("erased_report", "PreviewAny", (1200, 760), {"source": ("erase", 1)}, "Erasure report"),
        ]
        + side_by_side(1600, "tiny_world_controls", ("left_half_blue", ("steer", 0), ("pos", 0)),
                       ("red_erased", ("erase", 0), ("pos", 0)), vae=("world", 2)),
    ),
    Workflow(
        "flux_measure_then_steer",
        "FLUX: measure, then steer a feature",
        "Measure Activation Scale + Feature Scan (contrast) -> SAE Steer FLUX (x feature mean) -> side by side",
        "# Measure, then steer (FLUX)\n\n" + FLUX_FILES +
        "- `models/sae/flux_sae_single_9/` (`config.json` + `model.safetensors`): an SAE trained on the output "
        "of FLUX single block 9 (finebooru/Krea layout; any layout the pack reads will do)\n\n"
        "**How to use.** Run once and read the report: it gives the activation scale at the SAE's site and "
        "per-feature mean activations. The steer node's `strength` is in units of the measured feature mean "
        "(`strength_unit`), so 2 means \"twice as strong as the feature usually fires\". Put the feature you "
        "want in `features`: the Feature Scan ranks features by how much more they fire for the prompt than "
        "for the contrast prompt (the scene without the fox) and previews where each fires; its table lists the "
        "numbers, and the steer node's `pick features` button lists them with their measured means. The two "
        "Save nodes write the unsteered and the steered image from the same seed.",
        flux_base("a photograph of a red fox in a snowy forest, golden hour") + [
            N("sae", "SAELoader", (0, 430), {"sae_name": "flux_sae_single_9/model.safetensors", "dtype": "auto"}),
            N("scale", "SAEActivationScale", (1100, 0), {
                "model": ("unet", 0), "positive": ("guide", 0), "negative": ("neg", 0), "latent": ("latent", 0),
                "site": "single.out", "block": 9, "steps": 4, "seed": 42, "cfg": 1.0, "sampler_name": "euler",
                "scheduler": "simple", "sae": ("sae", 0)}),
            N("report", "PreviewAny", (1500, 420), {"source": ("scale", 1)}, "Scale report"),
            N("plot", "PreviewImage", (1100, 520), {"images": ("scale", 2)}, "Activation histogram"),
            N("contrast", "CLIPTextEncode", (380, 600), {"clip": ("clip", 0),
                                                        "text": "a photograph of a snowy forest, golden hour"},
              "Contrast prompt (without the fox)"),
            N("contrast_guide", "FluxGuidance", (800, 600), {"conditioning": ("contrast", 0), "guidance": 3.5},
              "FluxGuidance (contrast)"),
            N("scan", "SAEFeatureScan", (1100, 800), {
                "model": ("unet", 0), "sae": ("sae", 0), "positive": ("guide", 0), "negative": ("neg", 0),
                "latent": ("latent", 0), "site": "single.out", "block": 9, "tokens": "image", "steps": 4,
                "seed": 42, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "top_n": 16,
                "contrast": ("contrast_guide", 0)}, "Feature Scan (fox vs. no fox)"),
            N("scan_maps", "PreviewImage", (1500, 800), {"images": ("scan", 1)}, "Where the top features fire"),
            N("scan_table", "PreviewAny", (1500, 1150), {"source": ("scan", 0)}, "Top features (contrast report)"),
            N("steer", "SAEFluxSteer", (1500, 0), {
                "model": ("unet", 0), "sae": ("sae", 0), "site": "single.out", "block": 9, "tokens": "image",
                "features": "1234", "strength": 2.0, "mode": "add where active", "keep_error": True,
                "start_percent": 0.0, "end_percent": 1.0, "apply_to": "positive", "scale": ("scale", 0),
                "strength_unit": "× feature mean"}),
        ]
        + side_by_side(1900, "sae_steer", ("unsteered", ("unet", 0), ("guide", 0)),
                       ("steered", ("steer", 0), ("guide", 0))),
    ),
    Workflow(
        "flux_clip_pooled_edit",
        "FLUX: edit the pooled CLIP-L vector",
        "CLIPTextEncode -> SAE Edit Conditioning (pooled_output, set) -> FluxGuidance -> sample, side by side",
        "# Edit FLUX's pooled CLIP-L vector\n\n" + FLUX_FILES +
        "- `models/sae/clip_l_pooled_sae.safetensors`: an SAE trained on CLIP-L's pooled text embedding "
        "(768 wide); any layout the pack reads will do (`python -m sae.convert` writes this single-file form)\n\n"
        "**How to use.** The pooled vector drives every block's modulation in FLUX. CLIP-scale strengths "
        "(10-50) are normal here: `set` 30 replaces the feature's value with 30 on the pooled vector and keeps "
        "the SAE's reconstruction error, so only that feature changes. The text output says what the feature "
        "was before and after.",
        flux_base("a cozy reading nook with a window, watercolor") + [
            N("sae", "SAELoader", (0, 430), {"sae_name": "clip_l_pooled_sae.safetensors", "dtype": "auto"}),
            N("edit", "SAEConditioningEdit", (800, 200), {
                "conditioning": ("pos", 0), "sae": ("sae", 0), "target": "pooled_output", "features": "1234",
                "strength": 30.0, "mode": "set", "keep_error": True}),
            N("edit_guide", "FluxGuidance", (1200, 200), {"conditioning": ("edit", 0), "guidance": 3.5},
              "FluxGuidance (edited)"),
            N("report", "PreviewAny", (1200, 400), {"source": ("edit", 1)}, "Feature before/after"),
        ]
        + side_by_side(1500, "sae_pooled", ("unedited", ("unet", 0), ("guide", 0)),
                       ("edited", ("unet", 0), ("edit_guide", 0))),
    ),
    Workflow(
        "sdxl_revision_clip_vision_edit",
        "SDXL revision: edit a CLIP-vision embedding",
        "CLIPVisionEncode (ViT-bigG) -> SAE Edit CLIP Vision (set 22420 to 40) -> unCLIPConditioning -> sample",
        "# SDXL revision with an edited CLIP-vision embedding (Gytis Daujotas's recipe)\n\n"
        "**Files this workflow needs** (ComfyUI folders):\n"
        "- `models/checkpoints/sd_xl_base_1.0.safetensors` (SDXL base)\n"
        "- `models/clip_vision/clip_vision_g.safetensors` (CLIP ViT-bigG vision model)\n"
        "- `models/sae/clip-sae-128.pth`: Gytis Daujotas's CLIP SAE (`gytdau/clip-sae-128`, 1280 -> 163840)\n"
        "- an image in `input/` (select it in Load Image)\n\n"
        "**How to use.** The image is encoded with ViT-bigG; its 1280-d `image_embeds` go through the SAE, "
        "feature 22420 is set to 40 and the reconstruction error is added back (only that feature changes); "
        "`unCLIPConditioning` feeds the edited embedding to SDXL. The unedited branch uses the same seed.",
        [
            N("ckpt", "CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd_xl_base_1.0.safetensors"}),
            N("cv", "CLIPVisionLoader", (0, 160), {"clip_name": "clip_vision_g.safetensors"}),
            N("image", "LoadImage", (0, 270), {"image": "example.png"}),
            N("sae", "SAELoader", (0, 620), {"sae_name": "clip-sae-128.pth", "dtype": "auto"}),
            N("encode", "CLIPVisionEncode", (380, 160), {"clip_vision": ("cv", 0), "image": ("image", 0),
                                                        "crop": "center"}),
            N("edit", "SAEClipVisionEdit", (380, 330), {
                "clip_vision_output": ("encode", 0), "sae": ("sae", 0), "target": "image_embeds",
                "features": "22420", "strength": 40.0, "mode": "set", "keep_error": True}),
            N("report", "PreviewAny", (380, 640), {"source": ("edit", 1)}, "Feature before/after"),
            N("pos", "CLIPTextEncode", (380, -330), {"clip": ("ckpt", 1), "text": ""}, "Prompt (optional)"),
            N("neg", "CLIPTextEncode", (380, -110), {"clip": ("ckpt", 1), "text": "blurry, low quality"},
              "Negative"),
            N("plain_un", "unCLIPConditioning", (800, 0), {"conditioning": ("pos", 0),
                                                           "clip_vision_output": ("encode", 0),
                                                           "strength": 1.0, "noise_augmentation": 0.0},
              "unCLIPConditioning (unedited)"),
            N("edited_un", "unCLIPConditioning", (800, 330), {"conditioning": ("pos", 0),
                                                              "clip_vision_output": ("edit", 0),
                                                              "strength": 1.0, "noise_augmentation": 0.0},
              "unCLIPConditioning (edited)"),
            N("latent", "EmptyLatentImage", (800, 600), {"width": 1024, "height": 1024, "batch_size": 1}),
        ]
        + side_by_side(1200, "sae_revision", ("unedited", ("ckpt", 0), ("plain_un", 0)),
                       ("edited", ("ckpt", 0), ("edited_un", 0)), vae=("ckpt", 2), steps=25, cfg=6.0,
                       sampler="dpmpp_2m", scheduler="karras"),
    ),
    Workflow(
        "flux_two_sites_step_window",
        "FLUX: two features, two sites, step windows",
        "SAE Steer FLUX (double block 18, early steps) -> SAE Steer FLUX (single block 9, middle steps)",
        "# Two features at two sites, each in its own step window (FLUX)\n\n" + FLUX_FILES +
        "- `models/sae/flux_sae_double_18/` (`config.json` + `model.safetensors`): an SAE on the image stream "
        "of double block 18\n"
        "- `models/sae/flux_sae_single_9/` (`config.json` + `model.safetensors`): an SAE on the output of "
        "single block 9\n\n"
        "**How to use.** Steer nodes chain: the first boosts a feature during the first 40 % of sampling "
        "(composition), the second adds two features, one negative, between 30 % and 80 % (details). "
        "Strengths at FLUX sites are small (0.1-5): measure the site first (see the measure-then-steer "
        "workflow).",
        flux_base("a lighthouse on a cliff at dusk, oil painting") + [
            N("sae_a", "SAELoader", (0, 430), {"sae_name": "flux_sae_double_18/model.safetensors", "dtype": "auto"},
              "Load SAE (double 18)"),
            N("sae_b", "SAELoader", (0, 560), {"sae_name": "flux_sae_single_9/model.safetensors", "dtype": "auto"},
              "Load SAE (single 9)"),
            N("steer_a", "SAEFluxSteer", (1100, 0), {
                "model": ("unet", 0), "sae": ("sae_a", 0), "site": "double.img.out", "block": 18,
                "tokens": "image", "features": "1000", "strength": 1.5, "mode": "add where active",
                "keep_error": True, "start_percent": 0.0, "end_percent": 0.4, "apply_to": "positive"},
              "SAE Steer FLUX (double 18, early)"),
            N("steer_b", "SAEFluxSteer", (1500, 0), {
                "model": ("steer_a", 0), "sae": ("sae_b", 0), "site": "single.out", "block": 9,
                "tokens": "image", "features": "2000:-1.0, 2001:0.5", "strength": 1.0,
                "mode": "add where active", "keep_error": True, "start_percent": 0.3, "end_percent": 0.8,
                "apply_to": "positive"},
              "SAE Steer FLUX (single 9, middle)"),
        ]
        + sample_and_save("steered", ("steer_b", 0), ("guide", 0), ("neg", 0), 1900, 0,
                          "sae_two_sites/steered", "steered"),
    ),
]


# --- UI JSON ------------------------------------------------------------------------------------
def node_size(n_slots: int, n_widgets: int) -> list[int]:
    return [320, 46 + 22 * n_slots + 26 * n_widgets]


def widget_extras(spec, name: str) -> list:
    """The values the frontend saves after a widget's own: a seed's control, an upload button."""
    options = (spec[1] if len(spec) > 1 else {}) or {}
    extras = ["fixed"] * has_seed_control(spec, name) + ["image"] * bool(options.get("image_upload"))
    assert len(extras) == extra_widget_values(spec, name)
    return extras


def build(workflow: Workflow, object_info: dict) -> dict:
    ids = {n.key: i + 1 for i, n in enumerate(workflow.nodes)}
    types = {n.key: n.type for n in workflow.nodes}
    links, outgoing, laid_out = [], {}, []
    for n in workflow.nodes:
        if n.type not in object_info:
            raise ValueError(f"{workflow.name}: node type {n.type} is not served")
        info = object_info[n.type]
        required = info["input"].get("required", {})
        known = {name for name, _ in schema_inputs(info)}
        if set(n.values) - known:
            raise ValueError(f"{workflow.name}: {n.type} has no inputs {sorted(set(n.values) - known)} "
                             f"(it has {sorted(known)})")
        # the frontend lists socket inputs first, then one input per widget; links target socket indices
        sockets, widget_inputs, widgets = [], [], []
        for name, spec in schema_inputs(info):
            value = n.values.get(name)
            if is_widget(spec):
                if isinstance(value, tuple):
                    raise ValueError(f"{workflow.name}: {n.type}.{name} is a widget, not a socket")
                value = widget_default(spec) if value is None else value  # the frontend saves every widget
                choices = combo_options(spec)
                if choices and value not in choices:
                    raise ValueError(f"{workflow.name}: {n.type}.{name}={value!r} is not one of {choices[:12]}")
                widgets += [value] + widget_extras(spec, name)
                widget_inputs.append({"name": name, "type": "COMBO" if choices else spec[0],
                                      "widget": {"name": name}, "link": None})
            elif isinstance(value, tuple):
                src_key, slot = value
                link_id = len(links) + 1
                links.append([link_id, ids[src_key], slot, ids[n.key], len(sockets),
                              object_info[types[src_key]]["output"][slot]])
                sockets.append({"name": name, "type": spec[0], "link": link_id})
                outgoing.setdefault((src_key, slot), []).append(link_id)
            elif name in required:  # an optional socket left unconnected is not shown
                sockets.append({"name": name, "type": spec[0], "link": None})
        inputs = sockets + widget_inputs
        laid_out.append((n, info, inputs, widgets))
    ui_nodes = []
    for order, (n, info, inputs, widgets) in enumerate(laid_out):
        outputs = [{"name": out_name, "type": out_type, "links": outgoing.get((n.key, slot), []),
                    "slot_index": slot}
                   for slot, (out_type, out_name) in enumerate(zip(info["output"], info["output_name"]))]
        n_widgets = sum(1 for i in inputs if "widget" in i)
        ui = {"id": ids[n.key], "type": n.type, "pos": list(n.pos),
              "size": node_size(max(len(inputs) - n_widgets, len(outputs)), n_widgets),
              "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
              "properties": {"Node name for S&R": n.type}, "widgets_values": widgets}
        if n.title:
            ui["title"] = n.title
        ui_nodes.append(ui)
    note_id = len(ui_nodes) + 1
    ui_nodes.append({"id": note_id, "type": "MarkdownNote", "pos": [0, -420], "size": [560, 380], "flags": {},
                     "order": len(ui_nodes), "mode": 0, "inputs": [], "outputs": [],
                     "properties": {}, "widgets_values": [workflow.note], "title": "Read me: files and use",
                     "color": "#432", "bgcolor": "#653"})
    # the frontend wants a UUID here; a name-based one keeps the file stable across rebuilds
    workflow_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-sae-steering/{workflow.name}"))
    return {"id": workflow_id, "revision": 0, "last_node_id": note_id,
            "last_link_id": len(links), "nodes": ui_nodes, "links": links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.6, "offset": [60, 460]}}, "version": 0.4}


# --- thumbnails ---------------------------------------------------------------------------------
W, H, BAND = 1024, 576, 120


def node_colour(kind: str) -> tuple[str, str]:
    if kind.startswith("SAE"):
        return "#f0a030", "#3a2608"          # the pack's nodes
    if "Loader" in kind or kind in ("LoadImage",):
        return "#4a7fd0", "#0c1a30"
    if kind.startswith(("Save", "Preview")):
        return "#4caf6a", "#0c2814"
    return "#8a8f98", "#1c1e22"


def wrap(draw, text: str, font, width: float) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    return (lines + [line])[:3]


def thumbnail(workflow: Workflow, ui: dict, path: Path, object_info: dict) -> None:
    """A diagram of the graph: one column per x position of the layout; the pack's nodes in orange."""
    image = Image.new("RGB", (W, H), "#15171b")
    draw = ImageDraw.Draw(image)
    title_font, sub_font, node_font = (ImageFont.load_default(size=s) for s in (40, 19, 13))
    draw.rectangle([0, 0, W, BAND], fill="#22252b")
    draw.text((28, 20), workflow.title, font=title_font, fill="#f3f3f3")
    draw.text((30, 78), workflow.subtitle, font=sub_font, fill="#f0a030")
    nodes = [n for n in ui["nodes"] if n["type"] != "MarkdownNote"]
    columns = sorted({n["pos"][0] for n in nodes})
    col_w = (W - 40) / len(columns)
    boxes = {}
    for c, x in enumerate(columns):
        column = sorted((n for n in nodes if n["pos"][0] == x), key=lambda n: n["pos"][1])
        row_h = (H - BAND - 30) / max(len(column), 4)
        for r, n in enumerate(column):
            x0, y0 = 20 + c * col_w + 8, BAND + 20 + r * row_h
            boxes[n["id"]] = (x0, y0, x0 + col_w - 16, y0 + min(row_h - 12, 62))
    for _, src, _, dst, _, _ in ui["links"]:
        (_, sy0, sx1, sy1), (dx0, dy0, _, dy1) = boxes[src], boxes[dst]
        draw.line([(sx1, (sy0 + sy1) / 2), (dx0, (dy0 + dy1) / 2)], fill="#5d6470", width=2)
    for n in nodes:
        edge, fill = node_colour(n["type"])
        x0, y0, x1, y1 = boxes[n["id"]]
        draw.rounded_rectangle([x0, y0, x1, y1], radius=7, fill=fill, outline=edge, width=2)
        label = n.get("title") or object_info[n["type"]].get("display_name") or n["type"]
        for i, line in enumerate(wrap(draw, label, node_font, x1 - x0 - 12)):
            draw.text((x0 + 6, y0 + 5 + 16 * i), line, font=node_font, fill="#f3f3f3")
    image.save(path, "JPEG", quality=88)

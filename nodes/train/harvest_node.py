"""``SAEHarvestActivations`` ("SAE Harvest Activations"): record a FLUX site's activations over many prompts.

Every prompt is sampled for real (``comfy.sample.sample`` of a clone carrying a recording tap, the
tap that steers) and the activations at the site, every step, the positive half, are written to
``output/sae_activations/<name>/shard-NNNNN.safetensors`` in fp16 or bf16, ``prompts_per_shard``
prompts a shard, with a manifest (``sae.activation_shards``). Memory holds one shard's prompts at
most, whatever the number of prompts (prompts through a CLIP are encoded a shard at a time). A rerun
with the same prompts skips the shards already written, so an interrupted harvest resumes.
"""
from __future__ import annotations

import hashlib
import logging

import torch

import comfy.samplers
import comfy.utils
from comfy_api.latest import io

from ...sae.activation_shards import STORE_DTYPES, ShardWriter, prompts_digest
from ..sites.flux_sites import SITE_NAMES, TOKEN_CHOICES, check_site
from ..sites.model_families import latent_scale
from ..sites.sampling import run_sampling, sampling_inputs
from ..sites.tap import TapSpec, attach_tap
from .harvest_folder import harvest_folder


log = logging.getLogger(__name__)


class _Recorder:
    """Tap callback: keeps a copy of the handed-over activations, [tokens, d_in], in the harvest dtype, on the CPU."""

    def __init__(self, dtype: torch.dtype):
        self.dtype, self.parts = dtype, []

    def __deepcopy__(self, memo):
        return self

    def __call__(self, activations, event):
        self.parts.append(activations.reshape(-1, activations.shape[-1]).to("cpu", self.dtype))
        return None

    def take(self) -> torch.Tensor:
        out, self.parts = torch.cat(self.parts), []
        return out


def _prompt_list(clip, prompts: str, conditioning) -> list[tuple[str, object]]:
    """(label, conditioning or text to encode) per prompt: one per non-empty line, then each conditioning entry."""
    items = []
    lines = [line.strip() for line in (prompts or "").splitlines() if line.strip()]
    if lines and clip is None:
        raise ValueError("prompts were given but no clip is connected to encode them: connect a CLIP or a conditioning")
    items += [(line, line) for line in lines]
    for entry in conditioning or []:
        digest = hashlib.sha256(entry[0].float().cpu().numpy().tobytes()).hexdigest()[:16]
        items.append((f"conditioning:{digest}", [entry]))
    if not items:
        raise ValueError("no prompts: write prompts (one per line, with a clip) or connect a conditioning")
    return items


def _encode(clip, item):
    return clip.encode_from_tokens_scheduled(clip.tokenize(item)) if isinstance(item, str) else item


def harvest(model, items, clip, site, block, tokens, width, height, steps, seed, cfg, sampler_name, scheduler,
            dtype, folder, prompts_per_shard) -> dict:
    """Sample each prompt once (seed + its index) and write its activations in shards; returns a summary."""
    check_site(model, site, block)
    diffusion_model = model.get_model_object("diffusion_model")
    d_in = diffusion_model.hidden_size
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps)
    identity = dict(site=site, block=block, d_in=d_in, dtype=dtype, tokens=tokens)
    details = dict(model=f"{type(model.model).__name__}/{type(diffusion_model).__name__} hidden {d_in}",
                   steps=steps, sigmas=[float(s) for s in sigmas], width=width, height=height, seed=seed, cfg=cfg,
                   sampler_name=sampler_name, scheduler=scheduler, prompts=len(items),
                   prompts_per_shard=prompts_per_shard)
    writer = ShardWriter(folder, identity, details)
    recorder = _Recorder(STORE_DTYPES[dtype])
    patched, _ = attach_tap(model, TapSpec(site, block, tokens=tokens, apply_to="positive"), recorder)
    channels = model.get_model_object("latent_format").latent_channels
    scale = latent_scale(model)  # 8 on FLUX.1, 16 on FLUX.2: the latent ComfyUI's Empty*Latent node makes
    latent = {"samples": torch.zeros(1, channels, height // scale, width // scale)}
    bar = comfy.utils.ProgressBar(len(items) * steps)
    written = skipped = 0
    for shard, first in enumerate(range(0, len(items), prompts_per_shard)):
        group = items[first:first + prompts_per_shard]
        digest = prompts_digest([label for label, _ in group])
        if writer.done(shard, digest):
            skipped += 1
            bar.update_absolute((first + len(group)) * steps)
            continue
        for i, (_, item) in enumerate(group, start=first):
            run_sampling(patched, _encode(clip, item), None, latent, steps, seed + i, cfg, sampler_name, scheduler,
                         progress=bar, done=i * steps)
        writer.write(shard, recorder.take(), digest, (first, first + len(group)))
        written += 1
    writer.write_manifest()  # details (e.g. the prompt count) as of this run
    total = sum(s["tokens"] for s in writer.shards.values())
    log.info("Harvested %s[%d] into %s: %d shards written, %d already there, %d tokens", site, block, folder,
             written, skipped, total)
    return {"folder": folder, "written": written, "skipped": skipped, "tokens": total, "d_in": d_in}


class SAEHarvestActivations(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEHarvestActivations",
            display_name="SAE Harvest Activations",
            category="sae_steering",
            description="Sample every prompt for real and write the activations at a FLUX site to sharded "
                        "safetensors under output/sae_activations/<name>, the training data of SAE Train or "
                        "`python -m sae.train`. Rerun with the same prompts to resume.",
            inputs=[
                io.Model.Input("model"),
                io.String.Input("name", default="flux_harvest", tooltip="Folder under output/sae_activations/."),
                io.Combo.Input("site", options=SITE_NAMES, default="double.img.out",
                               tooltip="Where to read the activations (diffusers names in docs/sites.md)."),
                io.Int.Input("block", default=0, min=0, max=63, tooltip="Block index within its kind."),
                io.Combo.Input("tokens", options=TOKEN_CHOICES, default="image",
                               tooltip="Single-block sites: which tokens. Image streams: 'all' adds Kontext references."),
                io.String.Input("prompts", multiline=True, default="",
                                tooltip="One prompt per line, encoded with the clip."),
                io.Clip.Input("clip", optional=True),
                io.Conditioning.Input("conditioning", optional=True,
                                      tooltip="Prompts already encoded: each entry of the list is one prompt."),
                io.Int.Input("width", default=512, min=16, max=4096, step=16),
                io.Int.Input("height", default=512, min=16, max=4096, step=16),
                *sampling_inputs(4, max_steps=1000, seed_tooltip="Prompt i uses seed + i."),
                io.Combo.Input("dtype", options=["fp16", "bf16"], default="bf16",
                               tooltip="Stored precision (bf16 keeps FLUX's large outliers)."),
                io.Int.Input("prompts_per_shard", default=16, min=1, max=100000,
                             tooltip="Prompts per shard file: memory holds one shard."),
            ],
            outputs=[io.String.Output(display_name="folder"), io.String.Output(display_name="report")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, name, site, block, tokens, prompts, width, height, steps, seed, cfg, sampler_name,
                scheduler, dtype, prompts_per_shard, clip=None, conditioning=None) -> io.NodeOutput:
        folder = harvest_folder(name)
        items = _prompt_list(clip, prompts, conditioning)
        done = harvest(model, items, clip, site, block, tokens, width, height, steps, seed, cfg, sampler_name,
                       scheduler, dtype, folder, prompts_per_shard)
        report = (f"{done['tokens']} tokens of {site}[{block}] ({done['d_in']}-d, {dtype}) in {folder}: "
                  f"{done['written']} shards written, {done['skipped']} already there")
        return io.NodeOutput(folder, report)

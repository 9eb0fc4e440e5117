"""``SAETrain`` ("SAE Train"): train a TopK SAE on harvested activations, for runs small enough for one machine.

The same trainer as ``python -m sae.train`` (``sae.train_shards``) in one process; the SAE is written to
``models/sae/<save_name>.safetensors`` with its site in the metadata, so Load SAE lists it and
``site = auto`` finds its site. A run that was stopped resumes from its checkpoint (kept under
``output/sae_checkpoints/<save_name>``) when queued again with the same settings.
"""
from __future__ import annotations

import logging
import os

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ...sae.train_shards import TrainSettings, train_on_shards
from ..comfy_types import SAEType
from ..sae_loader import SAE_FOLDER
from .harvest_folder import HARVEST_FOLDER, plain_name, harvest_folder
from .train_plot import loss_plot

log = logging.getLogger(__name__)


def activations_folder(activations: str) -> str:
    """A harvest name (under output/sae_activations) or an absolute folder."""
    return activations if os.path.isabs(activations) else harvest_folder(activations)


def save_path(save_name: str) -> str:
    name = plain_name(save_name, "save_name")
    if not name.endswith(".safetensors"):
        name += ".safetensors"
    return os.path.join(folder_paths.get_folder_paths(SAE_FOLDER)[0], name)


class SAETrain(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAETrain",
            display_name="SAE Train",
            category="sae_steering",
            description="Train a TopK SAE (AuxK, unit-norm decoder, Adam) on activations from SAE Harvest "
                        "Activations and save it to models/sae. Large runs: `python -m sae.train` with torchrun.",
            inputs=[
                io.String.Input("activations", default="flux_harvest",
                                tooltip=f"A harvest name (output/{HARVEST_FOLDER}/<name>) or an absolute folder."),
                io.String.Input("save_name", default="my_flux_sae", tooltip="File name in models/sae."),
                io.Int.Input("d_sae", default=0, min=0, max=1 << 22, tooltip="Latents; 0 = expansion × width."),
                io.Int.Input("expansion", default=16, min=1, max=256),
                io.Int.Input("k", default=32, min=1, max=4096, tooltip="Latents kept per token."),
                io.Int.Input("batch_size", default=4096, min=1, max=1 << 20, tooltip="Tokens per step."),
                io.Int.Input("tokens", default=0, min=0, max=1 << 40, tooltip="Training tokens; 0 = one pass."),
                io.Float.Input("lr", default=0.0, min=0.0, max=1.0, step=1e-5, round=1e-6,
                               tooltip="Peak learning rate; 0 = 2e-4 / sqrt(d_sae / 16384)."),
                io.Combo.Input("normalize", options=["scalar", "layer_norm", "none"], default="scalar",
                               tooltip="Input normalisation, recorded in the file."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF),
            ],
            outputs=[SAEType.Output(display_name="sae"), io.String.Output(display_name="report"),
                     io.Image.Output(display_name="loss_plot")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, activations, save_name, d_sae, expansion, k, batch_size, tokens, lr, normalize,
                seed) -> io.NodeOutput:
        out = save_path(save_name)
        checkpoints = os.path.join(folder_paths.get_output_directory(), "sae_checkpoints",
                                   os.path.basename(out).removesuffix(".safetensors"))
        settings = TrainSettings(d_sae=d_sae or None, expansion=expansion, k=k, batch_size=batch_size,
                                 tokens=tokens or None, lr=lr or None, normalize=normalize, seed=seed,
                                 log_every=10)
        bar = None

        def progress(step, steps, fvu):
            nonlocal bar
            bar = bar or comfy.utils.ProgressBar(steps)
            bar.update_absolute(step, steps)
        sae, report = train_on_shards(activations_folder(activations), out, settings, checkpoint_dir=checkpoints,
                                      device=str(comfy.model_management.get_torch_device()), on_step=progress)
        text = (f"Trained {report.d_in} -> {report.d_sae} (k={report.k}) on {report.tokens} tokens in "
                f"{report.steps} steps: FVU {report.fvu:.4f}, dead latents {100 * report.dead_fraction:.1f}%, "
                f"{report.tokens_per_second:,.0f} tokens/s; saved {out} (site {sae.hook})")
        log.info("%s", text)
        return io.NodeOutput(sae, text, loss_plot(report.history, os.path.basename(out)))

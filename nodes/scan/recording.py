"""Record a feature scan at a site during a short sampling, check it saw something, draw its heatmaps: shared by the scan nodes."""
from __future__ import annotations

import comfy.utils

from ...sae.labels import describe
from ..sites.sampling import run_sampling
from ..sites.any_site import attach_site, describe_site
from ..sites.tap import TapSpec
from .heatmap_draw import draw_heatmaps
from .scan_recorder import ScanRecorder



def record(model, sae, spec: TapSpec, positive, negative, latent: dict, steps, seed, cfg, sampler_name,
           scheduler, progress: comfy.utils.ProgressBar, done: int, recorder: ScanRecorder | None = None) -> ScanRecorder:
    """One real sampling with a recording tap on a clone; returns the filled recorder (``recorder``, to add
    this sampling to what it already holds, or a new one)."""
    recorder = ScanRecorder(sae) if recorder is None else recorder
    patched, _ = attach_site(model, spec, recorder, d_in=sae.d_in)
    run_sampling(patched, positive, negative, latent, steps, seed, cfg, sampler_name, scheduler, progress, done)
    return checked(recorder, spec)


def checked(recorder: ScanRecorder, spec: TapSpec) -> ScanRecorder:
    """The recorder, once it holds something; a clear error when the site never ran."""
    if recorder.stats is None or recorder.stats.tokens == 0:
        raise ValueError(f"the scan recorded nothing at site {describe_site(spec.site, spec.block)} (tokens={spec.tokens}): "
                         "the site never ran with a positive prompt")
    return recorder


def heatmaps_for(result, sae, size: tuple[int, int], backdrop=None):
    """The top features' maps drawn at ``size`` (over ``backdrop``: an IMAGE batch, its first image, or for a video
    grid its frames under the tiles of the same time), named with labels. A video grid gives one sheet of tiled
    frames per feature (``heatmap_draw``)."""
    labels = [f"#{describe(f, sae.labels)}  peak {float(m.max()):.3g}" for f, m in zip(result.features, result.maps)]
    return draw_heatmaps(result.maps, size, labels, backdrop)

"""The two sets of SAE Find Features (concept, neutral): built from conditioning and prompts, measured at a site; writing a found label. Shared by Find Features and Erase Concept."""
from __future__ import annotations

import comfy.utils

from ...sae.labels import labels_target_for, read_labels, write_labels
from ..sites.tap import TapSpec
from .feature_measurements import sae_file
from .recording import record
from .scan_recorder import ScanRecorder


def conditioning_set(name: str, conditioning, prompts: str, clip) -> list:
    """The conditionings of one set: the connected CONDITIONING (if any) and one per non-empty line of
    ``prompts`` (encoded by ``clip``). An empty set is refused, naming the inputs."""
    lines = [line.strip() for line in (prompts or "").splitlines() if line.strip()]
    if lines and clip is None:
        raise ValueError(f"{name}_prompts: {len(lines)} prompt(s) given but no clip is connected to encode them")
    found = [] if conditioning is None else [conditioning]
    found += [clip.encode_from_tokens_scheduled(clip.tokenize(line)) for line in lines]
    if not found:
        raise ValueError(f"{name}: the set is empty; connect {name} or write {name}_prompts (one per line) with a clip")
    return found


def measure_sets(model, sae, spec: TapSpec, sets: list[list], latent: dict, steps: int, seed: int, cfg: float,
                 sampler_name: str, scheduler: str) -> list[ScanRecorder]:
    """One recorder per set, each filled by sampling every conditioning of the set (positive pass only)."""
    runs = sum(len(s) for s in sets)
    progress = comfy.utils.ProgressBar(steps * runs)
    recorders, done = [], 0
    for conditionings in sets:
        recorder = ScanRecorder(sae)
        for positive in conditionings:
            record(model, sae, spec, positive, None, latent, steps, seed, cfg, sampler_name, scheduler, progress,
                   done, recorder=recorder)
            done += steps
        recorders.append(recorder)
    return recorders


def write_top_label(sae, feature: int, label: str) -> str:
    """Label ``feature`` in the labels file beside the SAE (kept entries stay); returns the file's path."""
    path = sae_file(sae)
    if path is None:
        raise ValueError("write_label: this SAE was not loaded from a file, so there is no place for its labels file")
    target = labels_target_for(path)
    labels = read_labels(target, sae.d_sae) if target.is_file() else {}
    labels[int(feature)] = label.strip()
    write_labels(target, labels)
    return str(target)

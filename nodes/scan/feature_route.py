"""``GET /sae_steering/features?sae=NAME``: an SAE's features for the canvas's feature picker.

``NAME`` is a Load SAE ``sae_name``: only names the ``sae`` model folders list are served, so a
``../`` or absolute name is a 404 like any unknown name. The reply lists the features that have a
label (``<stem>.labels.json`` beside the weights file, or ``labels.json`` in the SAE's own folder: a
JSON object index -> label) or a measured activation (the latest SAE Feature Scan or SAE Embedding
Features run on this file, in this server), measured features first by mean. Errors are JSON
``{"error": ...}``; a stack trace goes to the log, never into the reply.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import sys

import folder_paths

from ...sae.labels import labels_file_for
from ..sae_loader import SAE_CACHE, SAE_FOLDER
from .feature_measurements import measured

ROUTE = "/sae_steering/features"

log = logging.getLogger(__name__)


class RouteError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def resolve_listed_sae(name: str) -> str:
    """The full path of ``name`` if the ``sae`` folders list it; anything else is a 404."""
    parts = re.split(r"[\\/]", name or "")
    if not name or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise RouteError(404, f"sae {name!r} is not a file in the SAE folders")
    if name not in folder_paths.get_filename_list(SAE_FOLDER):
        raise RouteError(404, f"sae {name!r} is not in the SAE folders (models/sae)")
    path = folder_paths.get_full_path(SAE_FOLDER, name)
    if path is None:
        raise RouteError(404, f"sae {name!r} is not in the SAE folders")
    return path


def feature_listing(name: str) -> dict:
    """The reply of the route for ``sae=name``; raises ``RouteError`` for a 4xx."""
    path = resolve_listed_sae(name)
    try:
        sae = SAE_CACHE.get(path, "auto")  # the same cache entry Load SAE (dtype auto) uses; it reads the labels
    except (ValueError, OSError, RuntimeError) as err:
        raise RouteError(422, f"sae {name!r} could not be read: {err}") from None
    d_sae, labels, warnings = sae.d_sae, sae.labels, []
    label_path = labels_file_for(path)
    measurement = measured(path)
    if measurement is not None and measurement.mean.numel() != d_sae:
        measurement = None  # the file changed since it was measured
    fired = [] if measurement is None else measurement.fired.nonzero().flatten().tolist()
    indices = sorted(set(labels) | set(fired))
    if measurement is not None:
        indices.sort(key=lambda f: -float(measurement.mean[f]))  # stable: ties keep index order
    features = []
    for f in indices:
        row = {"index": f, "label": labels.get(f)}
        if measurement is not None:
            row.update(mean=float(measurement.mean[f]), max=float(measurement.max[f]),
                       frequency=int(measurement.fired[f]) / measurement.tokens)
        features.append(row)
    return {"sae": name, "d_sae": d_sae, "labels_file": os.path.basename(label_path) if label_path else None,
            "measured_by": None if measurement is None else measurement.by,
            "measured_tokens": 0 if measurement is None else measurement.tokens,
            "features": features, "warnings": warnings}


async def features_handler(request):
    from aiohttp import web

    name = request.query.get("sae", "")
    try:  # reading an SAE can take a while: off the event loop
        body = await asyncio.get_running_loop().run_in_executor(None, feature_listing, name)
        return web.json_response(body)
    except RouteError as err:
        return web.json_response({"error": str(err)}, status=err.status)
    except Exception:  # the trace goes to the log only
        log.exception("%s?sae=%r failed", ROUTE, name)
        return web.json_response({"error": f"listing the features of sae {name!r} failed; see the server log"},
                                 status=500)


def register_with_server() -> bool:
    """Add the route to ComfyUI's running ``PromptServer``; outside a server (tests importing the pack)
    there is none, and nothing is registered."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    instance.routes.get(ROUTE)(features_handler)
    return True

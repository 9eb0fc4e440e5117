"""Writes ``example_workflows/*.json`` and their ``.jpg`` thumbnails from the descriptions in
``harness/example_workflows.py`` and the node schemas of a real ComfyUI server, started headless here.

Run it after a node's inputs change:

    .venv/bin/python scripts/build_example_workflows.py                         # all
    .venv/bin/python scripts/build_example_workflows.py flux_clip_pooled_edit   # by name
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))  # run as a script: the bootstrap
import comfyui_locator  # noqa: E402

comfyui_locator.register_pack()  # from here on the pack (with harness/) is comfyui_sae_steering
from comfyui_sae_steering.harness.comfyui_server import ComfyServer  # noqa: E402
from comfyui_sae_steering.harness.e2e_models import write_placeholders  # noqa: E402
from comfyui_sae_steering.harness.example_workflows import OUT, WORKFLOWS, build, thumbnail  # noqa: E402


def fetch_object_info() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        write_placeholders(Path(tmp))
        server = ComfyServer(comfyui_locator.locate_comfyui(), Path(tmp),
                             {"ComfyUI-SAE-Steering": comfyui_locator.PACK_ROOT}).start()
        try:
            return server.get("/object_info")
        finally:
            server.stop()


def main(names: list[str]) -> None:
    unknown = set(names) - {workflow.name for workflow in WORKFLOWS}
    if unknown:
        sys.exit(f"error: no example workflow named {', '.join(sorted(unknown))}")
    object_info = fetch_object_info()
    OUT.mkdir(exist_ok=True)
    for workflow in WORKFLOWS:
        if names and workflow.name not in names:
            continue
        ui = build(workflow, object_info)
        (OUT / f"{workflow.name}.json").write_text(json.dumps(ui, indent=2, ensure_ascii=False) + "\n")
        thumbnail(workflow, ui, OUT / f"{workflow.name}.jpg", object_info)
        sys.stdout.write(f"wrote {OUT / workflow.name}.json and .jpg\n")


if __name__ == "__main__":
    main(sys.argv[1:])

"""ComfyUI's real frontend in Debian's Chromium, driven by Playwright, for the browser test.

- ``FrontendServer``: the end-to-end server (``harness/comfyui_server.ComfyServer``) serving the frontend of the
  pinned ``comfyui-frontend-package`` (tests/requirements.txt) instead of an empty folder.
- ``chromium_executable``: the system Chromium (``$SAE_CHROMIUM``, else ``chromium`` on PATH);
  ``scripts/test`` installs it from Debian's packages when missing. Playwright never downloads one.
- ``Canvas``: what a person does on the page (drop a file, click a node's button, press Run) and what
  they see (dialogs, widget values, node images), as small page scripts.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from comfyui_sae_steering.harness.comfyui_server import ComfyServer

CHROMIUM_NAMES = ("chromium", "chromium-browser")
HOW_TO_GET_CHROMIUM = ("the browser test drives Debian's Chromium: `apt-get install chromium` (scripts/test does it "
                       "when run as root), or set SAE_CHROMIUM to a Chromium executable")
# first-run prompts that would cover the canvas; the missing-node warning stays on (the test reads it)
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.ShowMissingNodesWarning": True}
PAGE_TIMEOUT_MS = 120_000
# a dialog's close button (the template browser ignores Escape)
CLOSE_BUTTONS = ".p-dialog-mask .p-dialog-close-button, .p-dialog-mask button:has(.pi-times)"


class BrowserSetupError(RuntimeError):
    pass


def chromium_executable() -> str:
    explicit = os.environ.get("SAE_CHROMIUM")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrowserSetupError(f"SAE_CHROMIUM={explicit} is not an executable; " + HOW_TO_GET_CHROMIUM)
        return explicit
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserSetupError("no Chromium on PATH: " + HOW_TO_GET_CHROMIUM)


def frontend_root() -> Path:
    try:
        import comfyui_frontend_package
    except ImportError:
        raise BrowserSetupError("comfyui-frontend-package is not installed: run the tests with `bash scripts/test` "
                                "(it installs tests/requirements.txt)") from None
    return Path(comfyui_frontend_package.__file__).parent / "static"


class FrontendServer(ComfyServer):
    """The end-to-end server with the real frontend (``--front-end-root`` the package's static folder)."""

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("--front-end-root") + 1] = str(frontend_root())
        return command

    def start(self) -> "FrontendServer":
        super().start()
        status, reply = self.post("/settings", SETTINGS)
        if status != 200:
            self.stop()
            raise BrowserSetupError(f"POST /settings: HTTP {status} {reply}")
        return self


# --- page scripts -------------------------------------------------------------------------------
DROP_FILE = """async ({name, text}) => {
  const data = new DataTransfer();
  data.items.add(new File([text], name, {type: "application/json"}));
  const canvas = document.querySelector("#graph-canvas");
  const box = canvas.getBoundingClientRect();
  const at = {bubbles: true, cancelable: true, dataTransfer: data,
              clientX: box.x + box.width / 2, clientY: box.y + box.height / 2};
  for (const type of ["dragenter", "dragover", "drop"]) canvas.dispatchEvent(new DragEvent(type, at));
}"""

# every node of the graph as the frontend holds it: type known?, widgets, what it would save
GRAPH_STATE = """() => app.graph.nodes.map(node => ({
  id: node.id, type: node.type, title: node.title,
  registered: node.type in LiteGraph.registered_node_types,
  widgets: (node.widgets ?? []).map(w => ({name: w.name, type: w.type, value: w.value,
                                          serialize: w.serialize !== false && w.options?.serialize !== false})),
  widgets_values: node.serialize().widgets_values ?? [],
}))"""

# a widget's centre in page coordinates (canvas-drawn widgets have no DOM element)
WIDGET_POINT = """({nodeId, widgetName}) => {
  const node = app.graph.getNodeById(nodeId);
  app.canvas.centerOnNode?.(node);
  app.canvas.setDirty(true, true);
  app.canvas.draw(true, true);
  const widget = node.widgets.find(w => w.name === widgetName);
  const y = widget.y ?? widget.last_y;
  const height = widget.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT;
  const [x, top] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0] / 2, node.pos[1] + y + height / 2]);
  const box = app.canvas.canvas.getBoundingClientRect();
  const scale = box.width / app.canvas.canvas.width;
  return {x: box.x + x * scale, y: box.y + top * scale};
}"""

# output images the frontend shows on its image nodes: node id -> loaded image sizes
NODE_IMAGES = """(ids) => Object.fromEntries(ids.map(id => {
  const node = app.graph.getNodeById(id);
  const images = node?.imgs ?? [];
  const loaded = images.filter(img => img.complete && img.naturalWidth > 0);
  return [id, loaded.map(img => [img.naturalWidth, img.naturalHeight])];
}))"""


class Canvas:
    """One page of the frontend: load it, drop workflows, read what it shows."""

    def __init__(self, page, server: FrontendServer, screenshots: Path):
        self.page, self.server, self.screenshots = page, server, screenshots

    def open(self) -> "Canvas":
        self.page.goto(self.server.url)
        self.page.wait_for_function("() => Boolean(window.app?.graph && document.querySelector('#graph-canvas') && "
                                    "window.LiteGraph?.registered_node_types?.SAELoader)", timeout=PAGE_TIMEOUT_MS)
        return self

    def screenshot(self, name: str) -> Path:
        path = self.screenshots / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def dialogs(self) -> list[str]:
        return self.page.evaluate("[...document.querySelectorAll('.p-dialog')].map(d => d.innerText)")

    def close_dialogs(self) -> None:
        for attempt in range(6):
            if not self.page.locator(".p-dialog-mask").count():
                return
            if attempt % 2:
                self.page.locator(CLOSE_BUTTONS).filter(visible=True).last.click()
            else:
                self.page.keyboard.press("Escape")
            self.page.wait_for_timeout(300)
        raise AssertionError(f"a dialog does not close: {self.dialogs()}")

    def drop_workflow(self, name: str, workflow: dict) -> None:
        """Drop a workflow file onto the canvas, as a person drags one from their files."""
        self.close_dialogs()
        self.page.evaluate(DROP_FILE, {"name": f"{name}.json", "text": json.dumps(workflow)})
        ids = sorted(node["id"] for node in workflow["nodes"])
        self.page.wait_for_function("(ids) => JSON.stringify(app.graph.nodes.map(n => n.id).sort((a, b) => a - b)) "
                                    "=== JSON.stringify(ids)", arg=ids, timeout=PAGE_TIMEOUT_MS)
        self.page.wait_for_timeout(500)  # the missing-node dialog opens after the graph is configured

    def graph(self) -> list[dict]:
        return self.page.evaluate(GRAPH_STATE)

    def click_widget(self, node_id: int, widget_name: str) -> None:
        point = self.page.evaluate(WIDGET_POINT, {"nodeId": node_id, "widgetName": widget_name})
        self.page.mouse.click(point["x"], point["y"])

    def widget_value(self, node_id: int, widget_name: str):
        return self.page.evaluate("([id, name]) => app.graph.getNodeById(id).widgets.find(w => w.name === name).value",
                                  [node_id, widget_name])

    def node_images(self, node_ids: list[int]) -> dict[str, list]:
        return self.page.evaluate(NODE_IMAGES, node_ids)

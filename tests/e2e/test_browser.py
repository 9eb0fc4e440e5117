"""The pack in ComfyUI's own frontend, in a real browser (Debian's Chromium driven by Playwright), as a
person meets it: every example workflow dropped onto the canvas loads with every node known and every
widget at its saved value; the pack's templates are listed in the template browser; a tiny workflow
queued with the Run button shows its output images; the feature picker lists the connected SAE's
labelled and measured features and fills ``features``. Screenshots go to ``output/browser_test/``.
"""
import json
import math
import shutil

import pytest

from browser_harness import Canvas, FrontendServer, chromium_executable
from comfyui_sae_steering.harness.example_workflows import N, Workflow, build
from comfyui_sae_steering.harness.comfyui_locator import PACK_ROOT, locate_comfyui
from conftest import serve_e2e
from comfyui_sae_steering.harness.e2e_models import TINY_SAE_NAME
from comfyui_sae_steering.harness.workflow_api import FRONTEND_ONLY, is_widget, schema_inputs, to_api

SCREENSHOTS = PACK_ROOT / "output" / "browser_test"
EXAMPLES = sorted(path.stem for path in (PACK_ROOT / "example_workflows").glob("*.json"))
PACK_MODULE = "custom_nodes.ComfyUI-SAE-Steering"
RUN_TIMEOUT_MS = 300_000
IMAGE_NODES = {"PreviewImage", "SaveImage"}
# The workflow queued from the Run button: a UI workflow file, or None for the tiny-FLUX test workflow
# built below. Switch to the Tiny World example once it exists:
#   QUEUED_WORKFLOW = PACK_ROOT / "example_workflows" / "tiny_world_steer.json"
QUEUED_WORKFLOW = None
LABELS = {"5": "fox fur", "17": "snow on branches"}  # written beside the tiny SAE for the picker


def tiny_flux_workflow(object_info) -> dict:
    """Steer, measure and scan (with a contrast prompt) on the test-only tiny FLUX: three image outputs."""
    sae = f"{TINY_SAE_NAME}/model.safetensors"
    site = {"site": "double.img.out", "block": 0}
    run = {"steps": 2, "seed": 0, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple"}
    nodes = [
        N("model", "SAETestTinyFlux", (0, 0), {"seed": 0}),
        N("cond", "SAETestTinyConditioning", (0, 150), {"seed": 1}, "Prompt (tiny)"),
        N("contrast", "SAETestTinyConditioning", (0, 330), {"seed": 2}, "Contrast prompt (tiny)"),
        N("latent", "EmptySD3LatentImage", (0, 510), {"width": 32, "height": 32, "batch_size": 1}),
        N("sae", "SAELoader", (0, 700), {"sae_name": sae, "dtype": "auto"}),
        N("steer", "SAEFluxSteer", (400, 0), {"model": ("model", 0), "sae": ("sae", 0), **site, "tokens": "image",
                                              "features": "5", "strength": 2.0, "mode": "add"}),
        N("scale", "SAEActivationScale", (400, 520), {"model": ("model", 0), "sae": ("sae", 0),
                                                      "positive": ("cond", 0), "latent": ("latent", 0),
                                                      **site, **run}),
        N("plot", "PreviewImage", (800, 520), {"images": ("scale", 2)}, "Activation histogram"),
        N("scan", "SAEFeatureScan", (800, 0), {"model": ("steer", 0), "sae": ("sae", 0), "positive": ("cond", 0),
                                               "latent": ("latent", 0), "contrast": ("contrast", 0), **site,
                                               "tokens": "image", **run, "top_n": 4}),
        N("maps", "PreviewImage", (1200, 0), {"images": ("scan", 1)}, "Scan heatmaps"),
        N("table", "PreviewAny", (1200, 400), {"source": ("scan", 0)}, "Contrast report"),
    ]
    return build(Workflow("browser_tiny_flux", "Tiny FLUX (browser test)", "", "Test only.", nodes), object_info)


@pytest.fixture(scope="module")
def frontend_server(tmp_path_factory):
    yield from serve_e2e(tmp_path_factory.mktemp("comfyui_frontend_base"), FrontendServer)


@pytest.fixture(scope="module")
def frontend_object_info(frontend_server):
    return frontend_server.get("/object_info")


@pytest.fixture(scope="module")
def canvas(frontend_server):
    from playwright.sync_api import sync_playwright

    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable(),
                                             args=["--disable-dev-shm-usage"])  # small /dev/shm in containers
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            # loopback only: anything else the page asks for (the frontend polls comfy.org) is refused
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(frontend_server.url)
                          else route.abort())
            page = context.new_page()
            page.set_default_timeout(60_000)
            page_errors = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            yield Canvas(page, frontend_server, SCREENSHOTS).open()
            picker_errors = [e for e in page_errors if "feature_picker" in e]
            assert not picker_errors, picker_errors
        finally:
            browser.close()


def same_value(shown, saved) -> bool:
    if isinstance(saved, bool) or isinstance(shown, bool):
        return shown is saved
    if isinstance(saved, (int, float)) and isinstance(shown, (int, float)):
        return math.isfinite(shown) and math.isclose(shown, saved, rel_tol=1e-9, abs_tol=1e-9)
    return shown == saved


def test_frontend_is_the_one_comfyui_pins():
    from importlib.metadata import version

    pins = [line.strip() for line in (locate_comfyui() / "requirements.txt").read_text().splitlines()
            if line.startswith("comfyui-frontend-package")]
    assert pins == [f"comfyui-frontend-package=={version('comfyui-frontend-package')}"]
    assert pins[0] in (PACK_ROOT / "tests" / "requirements.txt").read_text().splitlines()


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_loads_whole_on_the_canvas(canvas, frontend_object_info, name):
    workflow = json.loads((PACK_ROOT / "example_workflows" / f"{name}.json").read_text())
    canvas.drop_workflow(name, workflow)
    canvas.screenshot(f"workflow_{name}")
    missing = [text for text in canvas.dialogs() if "missing" in text.lower()]
    assert not missing, f"{name}: the frontend reports missing nodes:\n{missing}"
    shown = {node["id"]: node for node in canvas.graph()}
    unknown = sorted({node["type"] for node in shown.values() if not node["registered"]})
    assert not unknown, f"{name}: node types unknown to the frontend: {unknown}"
    saved_inputs = to_api(workflow, frontend_object_info)  # the saved widget values by input name
    for saved in workflow["nodes"]:
        if saved["type"] in FRONTEND_ONLY:
            continue
        node, info = shown[saved["id"]], frontend_object_info[saved["type"]]
        widgets = {widget["name"]: widget["value"] for widget in node["widgets"]}
        for input_name, spec in schema_inputs(info):
            value = saved_inputs[str(saved["id"])]["inputs"].get(input_name)
            if not is_widget(spec) or isinstance(value, list):  # a socket, or a widget turned into a link
                continue
            assert input_name in widgets, f"{name}: node {saved['id']} ({saved['type']}) draws no {input_name} widget"
            assert same_value(widgets[input_name], value), \
                f"{name}: node {saved['id']} ({saved['type']}) shows {input_name}={widgets[input_name]!r}, " \
                f"saved {value!r}"
        if info.get("python_module") == PACK_MODULE:  # the pack's nodes save exactly what was loaded
            values, saved_values = node["widgets_values"], saved["widgets_values"]
            assert len(values) == len(saved_values) and all(map(same_value, values, saved_values)), \
                f"{name}: node {saved['id']} ({saved['type']}) would save {values}, loaded {saved_values}"


def test_missing_node_check_sees_the_frontends_dialog(canvas):
    """The check above is not vacuous: a workflow naming an unknown node type brings up the dialog."""
    workflow = json.loads((PACK_ROOT / "example_workflows" / f"{EXAMPLES[0]}.json").read_text())
    workflow["nodes"][0]["type"] = "SAENoSuchNode"
    canvas.drop_workflow("missing_node", workflow)
    canvas.screenshot("missing_node_dialog")
    assert any("SAENoSuchNode" in text and "missing" in text.lower() for text in canvas.dialogs())
    canvas.close_dialogs()


def test_pack_templates_are_listed_in_the_template_browser(canvas):
    page = canvas.page
    canvas.close_dialogs()
    page.get_by_text("Templates", exact=True).first.click()
    dialog = page.locator(".p-dialog").last
    dialog.get_by_text("ComfyUI-SAE-Steering").first.click()
    for name in EXAMPLES:
        dialog.get_by_text(name, exact=True).first.wait_for()
    canvas.screenshot("template_browser")
    canvas.close_dialogs()


@pytest.fixture(scope="module")
def queued_run(canvas, frontend_object_info):
    """The queued workflow dropped onto the canvas and run with the Run button, until its images show."""
    workflow = (json.loads(QUEUED_WORKFLOW.read_text()) if QUEUED_WORKFLOW
                else tiny_flux_workflow(frontend_object_info))
    canvas.drop_workflow("queued", workflow)
    image_nodes = [node["id"] for node in workflow["nodes"] if node["type"] in IMAGE_NODES]
    assert image_nodes, "the queued workflow has no image output"
    history_before = set(canvas.server.get("/history"))
    canvas.screenshot("queued_workflow")
    assert not canvas.dialogs(), canvas.dialogs()
    canvas.page.get_by_role("button", name="Run", exact=True).first.click()
    canvas.page.wait_for_function(
        """(ids) => ids.every(id => (app.graph.getNodeById(id)?.imgs ?? [])
                                       .some(img => img.complete && img.naturalWidth))
           || document.querySelector('.p-dialog .comfy-error-report, .p-toast-message-error')""",
        arg=image_nodes, timeout=RUN_TIMEOUT_MS)
    canvas.page.wait_for_timeout(300)
    canvas.screenshot("queued_workflow_outputs")
    new = {key: entry for key, entry in canvas.server.get("/history").items() if key not in history_before}
    return {"workflow": workflow, "image_nodes": image_nodes, "history": new}


def test_queued_workflow_shows_its_output_images(canvas, queued_run):
    (entry,) = queued_run["history"].values()
    assert entry["status"]["status_str"] == "success", entry["status"]
    shown = canvas.node_images(queued_run["image_nodes"])
    for node_id in queued_run["image_nodes"]:
        assert shown[str(node_id)], f"node {node_id} shows no image"
        assert all(width > 0 and height > 0 for width, height in shown[str(node_id)])
        for image in entry["outputs"][str(node_id)]["images"]:  # the files the UI shows exist
            folder = canvas.server.base / image["type"] / image["subfolder"]
            assert (folder / image["filename"]).is_file()
    # the picker's button is never queued: the pack's nodes get only the inputs they declare
    for node in entry["prompt"][2].values():
        info = canvas.server.get(f"/object_info/{node['class_type']}")[node["class_type"]]
        if info["python_module"] == PACK_MODULE:
            declared = {name for name, _ in schema_inputs(info)}
            assert set(node["inputs"]) <= declared, (node["class_type"], sorted(set(node["inputs"]) - declared))


def test_feature_picker_lists_labels_and_measurements_and_fills_features(canvas, queued_run):
    labels = canvas.server.models / "sae" / TINY_SAE_NAME / "labels.json"
    labels.write_text(json.dumps(LABELS))
    page = canvas.page
    steer = next(node["id"] for node in canvas.graph() if node["type"] == "SAEFluxSteer")
    canvas.click_widget(steer, "pick features")
    picker = page.locator(".sae-feature-picker")
    picker.locator(".sae-feature-row").first.wait_for()
    status = picker.locator(".note").first.inner_text()
    assert "labels from labels.json" in status and "measured by SAE Feature Scan" in status, status
    rows = picker.locator(".sae-feature-row")
    first = rows.first.inner_text()
    assert "mean" in first, first  # measured features first, with their means
    picker.locator(".sae-feature-search").fill("snow")
    assert rows.count() == 1 and "snow on branches" in rows.first.inner_text()
    canvas.screenshot("feature_picker")
    rows.first.click()
    assert picker.count() == 0
    assert canvas.widget_value(steer, "features") == "17"
    canvas.click_widget(steer, "pick features")  # shift-click adds to the list
    picker.locator(".sae-feature-search").fill("fur")
    rows.first.click(modifiers=["Shift"])
    assert canvas.widget_value(steer, "features") == "17, 5"
    page.keyboard.press("Escape")
    assert picker.count() == 0

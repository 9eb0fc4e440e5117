"""UI-format workflow (what ComfyUI's "Save" writes) -> API format (what ``POST /prompt`` takes).

The mapping the frontend applies when it queues a workflow, written against ``/object_info``:
``widgets_values`` hold one value per widget input, in schema order (required, then optional);
an input with ``control_after_generate`` (or an INT named seed or noise_seed, as
the frontend does) is followed by that control's value ("fixed",
"randomize", ...) and an ``image_upload`` combo by its upload button's value; both extras are
skipped. A linked input becomes ``[source node id, source slot]``. Frontend-only nodes (notes)
have no backend class and are dropped.
"""
from __future__ import annotations

FRONTEND_ONLY = {"Note", "MarkdownNote"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SKIPPED_MODES = {2, 4}  # muted, bypassed: the frontend leaves them out of the prompt


def schema_inputs(info: dict):
    """(name, spec) of every input of an ``/object_info`` entry, in the order widgets are laid out."""
    order = info.get("input_order") or {section: list(specs) for section, specs in info["input"].items()}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            yield name, info["input"][section][name]


def is_widget(spec) -> bool:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    if options.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


# the frontend gives an INT input of these names a control widget unless control_after_generate says otherwise
SEED_NAMES = ("seed", "noise_seed")


def has_seed_control(spec, name: str | None = None) -> bool:
    options = (spec[1] if len(spec) > 1 else {}) or {}
    if "control_after_generate" in options:
        return bool(options["control_after_generate"])
    return spec[0] == "INT" and name in SEED_NAMES


def extra_widget_values(spec, name: str | None = None) -> int:
    """Values the frontend stores after this widget's own: a seed's control, an upload button."""
    options = (spec[1] if len(spec) > 1 else {}) or {}
    return int(has_seed_control(spec, name)) + int(bool(options.get("image_upload")))


def to_api(workflow: dict, object_info: dict) -> dict:
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in FRONTEND_ONLY or node.get("mode", 0) in SKIPPED_MODES:
            continue
        if kind not in object_info:
            raise ValueError(f"node {node['id']}: type {kind!r} is not a node this server knows")
        linked = {slot["name"]: slot["link"] for slot in node.get("inputs", []) if slot.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for name, spec in schema_inputs(object_info[kind]):
            if is_widget(spec) and values:
                value = values.pop(0)
                del values[:extra_widget_values(spec, name)]
                inputs[name] = value
            if name in linked:
                link = links[linked.pop(name)]
                inputs[name] = [str(link[1]), link[2]]
        if values:
            raise ValueError(f"node {node['id']} ({kind}): {len(values)} widgets_values left over after the "
                             f"schema's widgets: {values!r}")
        if linked:
            raise ValueError(f"node {node['id']} ({kind}): linked inputs {sorted(linked)} are not in its schema")
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs}
    return prompt


def combo_options(spec) -> list:
    """The choices of a combo input, in either ``/object_info`` spelling (V1 list or V3 ``COMBO``)."""
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    return list(kind) if isinstance(kind, list) else list(options.get("options", []))


def widget_default(spec):
    options = (spec[1] if len(spec) > 1 else {}) or {}
    if "default" in options:
        return options["default"]
    choices = combo_options(spec)
    if choices:
        return choices[0]
    raise ValueError(f"input spec {spec!r} has no default")


def api_node(object_info: dict, class_type: str, **inputs) -> dict:
    """An API-format node: the given inputs, every other required widget at its schema default
    (so a prompt written against a node's contract inputs survives inputs added later)."""
    info = object_info[class_type]
    unknown = set(inputs) - {name for name, _ in schema_inputs(info)}
    if unknown:
        raise ValueError(f"{class_type} has no inputs {sorted(unknown)}")
    filled = dict(inputs)
    for name, spec in schema_inputs(info):
        if name not in filled and name in info["input"].get("required", {}) and is_widget(spec):
            filled[name] = widget_default(spec)
    return {"class_type": class_type, "inputs": filled}

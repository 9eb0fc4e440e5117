// Feature picker for the SAE steer and edit nodes (plain JS, no build step).
// A "pick features" button on the node opens a searchable list of the connected Load SAE's
// features: their labels (a labels file beside the SAE) and, after a Feature Scan or Embedding
// Features run, their measured activations. Click fills the `features` widget; shift-click adds.
// Data: GET /sae_steering/features?sae=NAME (nodes/scan/feature_route.py).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PICKER_NODES = new Set(["SAEFluxSteer", "SAEConditioningEdit", "SAEClipVisionEdit"]);
const LOADER = "SAELoader";
const SHOWN_ROWS = 300; // rows drawn at once; the search narrows the rest
const BUTTON = "pick features";

function linkById(graph, id) {
  if (graph.getLink) return graph.getLink(id);
  return graph.links?.get ? graph.links.get(id) : graph.links?.[id];
}

// The Load SAE node feeding the `sae` input, through Reroute nodes; null if there is none.
function connectedLoader(node) {
  const graph = node.graph;
  let linkId = node.inputs?.find((input) => input.name === "sae")?.link;
  for (let hops = 0; linkId != null && hops < 64; hops++) {
    const link = linkById(graph, linkId);
    const origin = link && graph.getNodeById(link.origin_id);
    if (!origin) return null;
    if ((origin.comfyClass ?? origin.type) === LOADER) return origin;
    if (origin.type !== "Reroute") return null;
    linkId = origin.inputs?.[0]?.link;
  }
  return null;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text != null) el.textContent = text;
  return el;
}

function formatNumber(value) {
  return value == null ? "" : Number(value).toPrecision(4);
}

function addStyle() {
  if (document.getElementById("sae-feature-picker-style")) return;
  const style = element("style");
  style.id = "sae-feature-picker-style";
  style.textContent = `
.sae-feature-picker { position: fixed; inset: 0; z-index: 10000; background: rgba(0,0,0,.45);
  display: flex; align-items: center; justify-content: center; font: 13px sans-serif; }
.sae-feature-picker .panel { background: #222; color: #ddd; border: 1px solid #555; border-radius: 8px;
  width: min(640px, 92vw); max-height: 80vh; display: flex; flex-direction: column; padding: 12px; gap: 8px; }
.sae-feature-picker .title { font-weight: bold; font-size: 14px; }
.sae-feature-picker .note { color: #aaa; }
.sae-feature-picker .warning { color: #e9b44c; }
.sae-feature-picker input { background: #111; color: #eee; border: 1px solid #555; border-radius: 4px; padding: 6px; }
.sae-feature-picker .list { overflow-y: auto; flex: 1; border-top: 1px solid #444; }
.sae-feature-picker .sae-feature-row { display: grid; grid-template-columns: 70px 1fr 160px; gap: 8px;
  padding: 4px 6px; cursor: pointer; border-bottom: 1px solid #333; }
.sae-feature-picker .sae-feature-row:hover { background: #335; }
.sae-feature-picker .numbers { color: #9cf; text-align: right; font-family: monospace; }
.sae-feature-picker .buttons { display: flex; justify-content: space-between; color: #aaa; }
.sae-feature-picker button { background: #333; color: #eee; border: 1px solid #666; border-radius: 4px; padding: 4px 12px; }
`;
  document.head.appendChild(style);
}

function setFeatures(node, index, add) {
  const widget = node.widgets?.find((w) => w.name === "features");
  if (!widget) return;
  const current = String(widget.value ?? "").split(/[,;\s]+/).filter(Boolean);
  const listed = current.some((entry) => entry.split(":")[0] === String(index));
  widget.value = add && current.length ? (listed ? current.join(", ") : [...current, index].join(", ")) : String(index);
  widget.callback?.(widget.value, app.canvas, node);
  node.setDirtyCanvas?.(true, true);
}

// Rows matching `query` (index prefix or label text), at most `limit` (+1 to tell there are more).
function matches(listing, query, limit) {
  const q = query.trim().toLowerCase();
  const hit = (row) => !q || String(row.index).startsWith(q) || (row.label ?? "").toLowerCase().includes(q);
  const rows = listing.features.filter(hit);
  const known = new Set(listing.features.map((row) => row.index));
  // every index is pickable: past the labelled/measured ones, plain indices (by prefix)
  for (let f = 0; f < listing.d_sae && rows.length <= limit; f++) {
    if (!known.has(f) && (!q || String(f).startsWith(q))) rows.push({ index: f, label: null });
  }
  return rows;
}

function openPicker(node) {
  const loader = connectedLoader(node);
  const saeName = loader?.widgets?.find((w) => w.name === "sae_name")?.value;
  addStyle();
  const overlay = element("div", "sae-feature-picker");
  const panel = element("div", "panel");
  overlay.appendChild(panel);
  const close = () => { overlay.remove(); document.removeEventListener("keydown", onKey, true); };
  const onKey = (event) => { if (event.key === "Escape") { event.stopPropagation(); close(); } };
  document.addEventListener("keydown", onKey, true);
  overlay.addEventListener("pointerdown", (event) => { if (event.target === overlay) close(); });
  panel.appendChild(element("div", "title", saeName ? `Features of ${saeName}` : "Feature picker"));
  const status = element("div", "note", saeName ? "loading…" : "Connect a Load SAE node to the sae input first.");
  panel.appendChild(status);
  const buttons = element("div", "buttons", "click: use this feature · shift-click: add it to the list");
  const closeButton = element("button", null, "Close");
  closeButton.onclick = close;
  buttons.appendChild(closeButton);
  document.body.appendChild(overlay);
  if (!saeName) { panel.appendChild(buttons); return; }

  api.fetchApi(`/sae_steering/features?sae=${encodeURIComponent(saeName)}`).then(async (response) => {
    const listing = await response.json();
    if (!response.ok) { status.textContent = listing.error ?? `HTTP ${response.status}`; status.className = "warning"; return; }
    status.textContent = [
      `${listing.d_sae} features`,
      listing.labels_file ? `labels from ${listing.labels_file}` : "no labels file",
      listing.measured_by ? `measured by ${listing.measured_by} over ${listing.measured_tokens} tokens`
                          : "no measurements yet (run SAE Feature Scan or SAE Embedding Features)",
    ].join(" · ");
    for (const warning of listing.warnings ?? []) panel.appendChild(element("div", "warning", warning));
    const search = element("input", "sae-feature-search");
    search.placeholder = "search: index or label";
    const list = element("div", "list");
    panel.append(search, list, buttons);
    const render = () => {
      const rows = matches(listing, search.value, SHOWN_ROWS);
      list.replaceChildren(...rows.slice(0, SHOWN_ROWS).map((row) => {
        const item = element("div", "sae-feature-row");
        item.dataset.index = row.index;
        const numbers = row.mean == null ? "" :
          `mean ${formatNumber(row.mean)} · max ${formatNumber(row.max)}`;
        item.append(element("span", null, `#${row.index}`), element("span", "label", row.label ?? ""),
                    element("span", "numbers", numbers));
        item.title = row.frequency == null ? "" : `fires on ${(100 * row.frequency).toFixed(1)}% of tokens`;
        item.onclick = (event) => { setFeatures(node, row.index, event.shiftKey); if (!event.shiftKey) close(); };
        return item;
      }));
      if (rows.length > SHOWN_ROWS) list.appendChild(element("div", "note", "more: refine the search"));
    };
    search.oninput = render;
    render();
    search.focus();
  }).catch((error) => { status.textContent = `could not list features: ${error}`; status.className = "warning"; });
}

app.registerExtension({
  name: "sae_steering.feature_picker",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (!PICKER_NODES.has(nodeData.name)) return;
    const created = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = created?.apply(this, arguments);
      // last, and never serialised: saved widgets_values and queued prompts stay as they were
      const button = this.addWidget("button", BUTTON, null, () => openPicker(this), { serialize: false });
      button.serialize = false;
      return result;
    };
  },
});

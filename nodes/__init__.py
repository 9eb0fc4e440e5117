"""ComfyUI glue for the pack: nodes, FLUX activation sites, patches and plots."""

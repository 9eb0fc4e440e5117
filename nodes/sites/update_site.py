"""Residual-update sites (``*.update``): the tapped tensor is a block's output minus its input.

sdxl-unbox's SAEs read ``output − input`` of a block and add their edit to the output. The block patch
keeps a copy of the block's input (FLUX blocks add into it in place), hands the tap ``out − in``, and
adds whatever the tap changed in that update to the output: tokens and rows the tap leaves alone, and a
tap that changes nothing, leave the block's output bit-identical.
"""
from __future__ import annotations


def update_block_patch(tap, args, extra, state_key: str):
    """The ``patches_replace["dit"]`` body of ``tap`` (a ``SiteTap``) at an update site."""
    state = args["transformer_options"].get(state_key, {}).get(tap.uid)
    run = (lambda: tap.previous(args, extra)) if tap.previous is not None else (lambda: extra["original_block"](args))
    if state is None or state.event is None:
        return run()
    key = "img" if tap.site.stream in ("img", "joint") else "txt"
    before = args[key].clone()  # the block adds into its input in place
    out = run()
    update = out[key] - before
    edited = tap._apply(update, state)
    if edited is update:
        return out
    out = dict(out)
    out[key] = out[key] + (edited - update)
    return out

"""Convert any SAE layout ``load_sae`` reads into this pack's single ``.safetensors`` file.

    python -m sae.convert SRC DST.safetensors [--dtype bf16|fp32] [--k K]

Run from the pack's folder (``sae`` is then a top-level package). The source is never modified.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .formats import pack
from .load import load_sae

DTYPES = ("bf16", "fp16", "fp32")


def convert(src, dst, dtype: str | None = None, k: int | None = None):
    """Load ``src`` (any known layout) and write it to ``dst`` (.safetensors); returns the loaded SAE."""
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() != ".safetensors":
        raise ValueError(f"destination {dst} must end in .safetensors")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"destination {dst} is the source file: choose another name")
    sae = load_sae(src, device="cpu", dtype=dtype, k=k)
    fmt = (sae.source or "").split(":", 1)[0] or None
    dst.parent.mkdir(parents=True, exist_ok=True)
    pack.write(sae, dst, source_format=fmt)
    return sae


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sae.convert", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="SAE file or folder in any layout load_sae reads")
    parser.add_argument("dst", help="output .safetensors file")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="cast the weights (default: keep)")
    parser.add_argument("--k", type=int, default=None, help="TopK k, when the source lacks or should override it")
    args = parser.parse_args(argv)
    try:
        sae = convert(args.src, args.dst, args.dtype, args.k)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst}: {sae!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

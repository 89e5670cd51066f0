"""Execute a chapter into a scratch copy and print its text outputs; save its figures as PNG files.

    python tools/show_outputs.py book/05b-sam-at-scale.ipynb [--out /tmp/05b]

For reviewing a chapter under the current profile (``SAM_COURSE_PROFILE``) without touching the
committed, stripped notebook: the executed copy is ``<out>/executed.ipynb``, the figures
``<out>/cell-NN-K.png``, and the glued values are printed with their names.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="folder for the outputs (default /tmp/<name>)")
    parser.add_argument("--no-execute", action="store_true", help="read an already executed copy in --out")
    args = parser.parse_args()
    out = args.out or Path("/tmp") / args.notebook.stem
    out.mkdir(parents=True, exist_ok=True)
    executed = out / "executed.ipynb"
    if not args.no_execute:
        shutil.copy(args.notebook, executed)
        execute = str(Path(sys.executable).parent / "jupyter-execute")
        subprocess.run([execute, "--inplace", "--timeout=3600", str(executed.resolve())],
                       check=False, cwd=args.notebook.resolve().parent)
    nb = nbformat.read(executed, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for k, output in enumerate(cell.get("outputs", [])):
            if output.output_type == "stream":
                print(f"[{i}] {output.name}: {output.text.rstrip()[:3000]}")
            elif output.output_type == "error":
                print(f"[{i}] ERROR {output.ename}: {output.evalue}")
            else:
                meta = output.get("metadata", {})
                name = meta.get("scrapbook", {}).get("name")
                prefix = meta.get("scrapbook", {}).get("mime_prefix", "")
                # glue() stores its value under prefixed MIME types.
                data = {key[len(prefix):] if prefix and key.startswith(prefix) else key: value
                        for key, value in output.get("data", {}).items()}
                if "image/png" in data:
                    path = out / f"cell-{i:02d}-{k}{'-' + name if name else ''}.png"
                    path.write_bytes(base64.b64decode(data["image/png"]))
                    print(f"[{i}] figure {name or ''} -> {path}")
                elif "text/plain" in data:
                    label = f"glue {name}" if name else "value"
                    print(f"[{i}] {label}: {data['text/plain'][:3000]}")


if __name__ == "__main__":
    main()

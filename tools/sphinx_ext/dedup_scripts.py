"""Sphinx extension: drop repeated <script> entries from every HTML page.

sphinx-thebe (loaded by Jupyter Book for the launch buttons) adds its inline configuration
script each time Sphinx reads documents; myst-nb's `{nb-exec-table}` makes Sphinx read a second
time, so every page declared `const THEBE_JS_URL` twice and the browser raised
"Identifier 'THEBE_JS_URL' has already been declared" (caught by tools/check_rendered.py).
This keeps the first of identical scripts (same file, same attributes, same inline body).
Loaded from _config.yml (sphinx.local_extensions).
"""

from __future__ import annotations


def _key(script) -> tuple:
    filename = getattr(script, "filename", script) or ""  # inline scripts: None or ""
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def dedup_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", dedup_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Inspection reports (巡检报告): figures built from the store as plain data, rendered to HTML.

Each report kind has a `build_*` (store -> JSON-serialisable dict, archived next to the HTML)
and a `render_*` (dict -> HTML) so an archived report can be re-rendered without the store.
"""

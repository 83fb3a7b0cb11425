"""The report as one self-contained HTML page: inline CSS, images as base64 data URIs, no script,
no network. Links to run files (configs, logs) stay relative to the page's folder."""

from __future__ import annotations

import base64
import html

from benchmark.report.document import (
    ALERT_LABELS,
    Alert,
    Document,
    FigureBlock,
    Heading,
    TableBlock,
    Text,
)
from benchmark.report.tables import inline_html, to_html

CSS = """
:root { --ink: #1f2328; --muted: #656d76; --line: #d0d7de; --soft: #f6f8fa; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5;
  font: 15px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 64px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 40px 0 12px; padding-bottom: 6px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 17px; margin: 28px 0 8px; }
p { margin: 8px 0; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code { font: 12.5px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  background: var(--soft); padding: 1px 4px; border-radius: 4px; word-break: break-word; }
nav.toc { background: var(--soft); border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 18px; margin: 18px 0; columns: 2; }
nav.toc a { display: block; padding: 1px 0; }
.alert { border-radius: 8px; padding: 10px 14px; margin: 10px 0; border: 1px solid; }
.alert.danger { background: #ffebe9; border-color: #ff8182; color: #82071e; font-weight: 600; }
.alert.warning { background: #fff8c5; border-color: #d4a72c; }
.alert.info { background: #ddf4ff; border-color: #54aeff; }
figure { margin: 18px 0; }
figcaption { font-weight: 600; margin-bottom: 6px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eaeef2; text-align: left;
  vertical-align: top; }
thead th { border-top: 2px solid var(--ink); border-bottom: 1px solid var(--ink); }
tbody tr:last-child td { border-bottom: 2px solid var(--ink); }
th.num, td.num { text-align: right; white-space: nowrap; }
td.nowrap, td:first-child { white-space: nowrap; }
tr.group td { border-top: 1px solid #afb8c1; }
tr.reproduced td { background: #fff; }
tr.reported td { color: var(--muted); font-style: italic; background: var(--soft); }
tr.delta td { color: var(--muted); font-size: 12.5px; background: var(--soft); }
tr.missing td, td .missing { color: #9a6700; }
tr.alert td { background: #ffebe9; }
.note { color: var(--muted); font-size: 12.5px; margin: 4px 0; max-width: 980px; }
figure.image img { max-width: 100%; height: auto; border: 1px solid #eaeef2; border-radius: 6px; }
figure.image p { color: var(--muted); font-size: 13px; }
.skipped { color: #9a6700; font-size: 13.5px; }
.meta { color: var(--muted); margin: 0 0 8px; }
"""


def image_html(block: FigureBlock) -> str:
    item = block.item
    title = html.escape(item.title)
    if item.png is None:
        return f'<p class="skipped">{title}: not drawn ({inline_html(item.note)}).</p>'
    data = base64.b64encode(item.png).decode("ascii")
    note = f" Note: {inline_html(item.note)}." if item.note else ""
    return (
        f'<figure class="image" id="{html.escape(item.name)}"><figcaption>{title}</figcaption>'
        f'<img alt="{title}" src="data:image/png;base64,{data}">'
        f"<p>{inline_html(item.caption)}{note}</p></figure>"
    )


def block_html(block: object) -> str:
    if isinstance(block, Heading):
        return f'<h{block.level} id="{block.anchor}">{inline_html(block.text)}</h{block.level}>'
    if isinstance(block, Text):
        return f"<p>{inline_html(block.text)}</p>"
    if isinstance(block, Alert):
        text = inline_html(f"{ALERT_LABELS[block.level]} {block.text}")
        return f'<div class="alert {block.level}">{text}</div>'
    if isinstance(block, TableBlock):
        return to_html(block.table)
    if isinstance(block, FigureBlock):
        return image_html(block)
    raise TypeError(f"unknown block {block!r}")


def to_html_page(document: Document, meta: str) -> str:
    """The page: title, the leading alerts, a table of contents, then every block."""
    blocks = document.blocks
    lead = next((i for i, b in enumerate(blocks) if not isinstance(b, Alert)), len(blocks))
    toc = "".join(
        f'<a href="#{b.anchor}">{html.escape(b.text)}</a>'
        for b in blocks
        if isinstance(b, Heading) and b.level == 2
    )
    alerts = "\n".join(block_html(block) for block in blocks[:lead])
    sections = [i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.level == 2]
    split = sections[1] if len(sections) > 1 else lead  # the first section, then the contents
    first = "\n".join(block_html(block) for block in blocks[lead:split])
    body = "\n".join(block_html(block) for block in blocks[max(lead, split) :])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(document.title)}</title><style>{CSS}</style></head>\n<body><main>"
        f'<h1>{html.escape(document.title)}</h1><p class="meta">{inline_html(meta)}</p>'
        f'{alerts}\n{first}<nav class="toc">{toc}</nav>\n{body}\n</main></body></html>\n'
    )

"""A report as a list of blocks, rendered to Markdown here and to HTML in html.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from benchmark.report.figures import FigureItem
from benchmark.report.tables import Table, to_markdown


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.text.lower()).strip("-")


@dataclass(frozen=True)
class Text:
    text: str  # inline markup (tables.INLINE)


@dataclass(frozen=True)
class Alert:
    text: str
    level: str = "warning"  # danger | warning | info


@dataclass(frozen=True)
class TableBlock:
    table: Table


@dataclass(frozen=True)
class FigureBlock:
    item: FigureItem


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks: object) -> None:
        self.blocks.extend(blocks)


ALERT_LABELS = {"danger": "⚠ **WARNING**", "warning": "⚠", "info": "ℹ"}


def to_markdown_document(document: Document, figures_folder: str = "figures") -> str:
    parts = [f"# {document.title}\n"]
    for block in document.blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}\n")
        elif isinstance(block, Text):
            parts.append(block.text + "\n")
        elif isinstance(block, Alert):
            parts.append(f"> {ALERT_LABELS[block.level]} {block.text}\n")
        elif isinstance(block, TableBlock):
            parts.append(to_markdown(block.table))
        elif isinstance(block, FigureBlock):
            item = block.item
            if item.png is None:
                parts.append(f"*{item.title}: not drawn ({item.note}).*\n")
            else:
                note = f" Note: {item.note}." if item.note else ""
                parts.append(
                    f"![{item.title}]({figures_folder}/{item.name})\n\n*{item.caption}*{note}\n"
                )
        else:
            raise TypeError(f"unknown block {block!r}")
    return "\n".join(parts)

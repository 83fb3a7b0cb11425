"""A small table model rendered to Markdown, LaTeX (booktabs) and HTML alike.

Cell and paragraph text use a tiny inline markup, the subset of Markdown the report needs:
``**bold**``, ``\\`code\\```, ``[text](href)``. Markdown keeps it as it is, HTML and LaTeX
translate it (LaTeX drops links, keeping their text).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Column:
    name: str
    align: str = "l"  # l | r
    latex: bool = True  # False: HTML and Markdown only (links, long text)
    nowrap: bool = False  # HTML: keep the cell on one line


@dataclass(frozen=True)
class Row:
    cells: tuple[str, ...]
    kind: str = ""  # css class: reproduced | reported | delta | missing ...
    group_start: bool = False  # a rule above it (a new method's block)


@dataclass
class Table:
    key: str  # unique id: HTML anchor, LaTeX label
    caption: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str, kind: str = "", group_start: bool = False) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(
                f"table {self.key}: {len(cells)} cells for {len(self.columns)} columns"
            )
        self.rows.append(Row(tuple(cells), kind, group_start))


# ----- inline markup --------------------------------------------------------------------------


def inline_html(text: str) -> str:
    out, last = [], 0
    for match in INLINE.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        code, bold, label, href = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline_html(bold)}</strong>")
        else:
            out.append(f'<a href="{html.escape(href)}">{inline_html(label)}</a>')
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "−": r"$-$", "—": "---", "–": "--", "Δ": r"$\Delta$", "†": r"$^\dagger$",
    "≥": r"$\geq$", "≤": r"$\leq$", "·": r"$\cdot$", "√": r"$\surd$", "×": r"$\times$",
    "⚠": "(!)", "✓": "yes", "✗": "no",
}  # fmt: skip


def latex_escape(text: str) -> str:
    return "".join(LATEX_ESCAPES.get(char, char) for char in text)


def inline_latex(text: str) -> str:
    out, last = [], 0
    for match in INLINE.finditer(text):
        out.append(latex_escape(text[last : match.start()]))
        code, bold, label, _ = match.groups()
        if code is not None:
            out.append(rf"\texttt{{{latex_escape(code)}}}")
        elif bold is not None:
            out.append(rf"\textbf{{{inline_latex(bold)}}}")
        else:
            out.append(inline_latex(label))
        last = match.end()
    out.append(latex_escape(text[last:]))
    return "".join(out)


# ----- renderers ------------------------------------------------------------------------------


def to_markdown(table: Table) -> str:
    def cell(text: str) -> str:
        return " ".join(text.replace("|", r"\|").split()) if text else " "

    align = {"l": ":---", "r": "---:"}
    lines = [
        "| " + " | ".join(cell(c.name) for c in table.columns) + " |",
        "| " + " | ".join(align[c.align] for c in table.columns) + " |",
    ]
    lines += ["| " + " | ".join(cell(text) for text in row.cells) + " |" for row in table.rows]
    text = f"**{table.caption}**\n\n" + "\n".join(lines) + "\n"
    if table.notes:
        text += "\n" + "\n".join(f"{note}  " for note in table.notes) + "\n"
    return text


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment (columns marked ``latex=False`` left out)."""
    keep = [i for i, column in enumerate(table.columns) if column.latex]
    spec = "".join(table.columns[i].align for i in keep)
    header = " & ".join(rf"\textbf{{{latex_escape(table.columns[i].name)}}}" for i in keep)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{inline_latex(table.caption)}}}",
        rf"\label{{tab:{table.key}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        header + r" \\",
        r"\midrule",
    ]
    for index, row in enumerate(table.rows):
        if row.group_start and index > 0:
            lines.append(r"\midrule")
        lines.append(" & ".join(inline_latex(row.cells[i]) for i in keep) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        notes = " ".join(inline_latex(note) for note in table.notes)
        lines.append(rf"\par\smallskip\parbox{{\linewidth}}{{\footnotesize {notes}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    def row_html(cells: tuple[str, ...], tag: str, row_class: str) -> str:
        parts = []
        for column, text in zip(table.columns, cells, strict=True):
            cell_class = "num" if column.align == "r" else "nowrap" if column.nowrap else ""
            attribute = f' class="{cell_class}"' if cell_class else ""
            parts.append(f"<{tag}{attribute}>{inline_html(text)}</{tag}>")
        attribute = f' class="{row_class}"' if row_class else ""
        return f"<tr{attribute}>" + "".join(parts) + "</tr>"

    head = row_html(tuple(c.name for c in table.columns), "th", "")
    body = [
        row_html(
            row.cells, "td", " ".join(filter(None, [row.kind, "group" if row.group_start else ""]))
        )
        for row in table.rows
    ]
    notes = "".join(f'<p class="note">{inline_html(note)}</p>' for note in table.notes)
    return (
        f'<figure class="table" id="{html.escape(table.key)}">'
        f"<figcaption>{inline_html(table.caption)}</figcaption>"
        f'<div class="scroll"><table><thead>{head}</thead><tbody>'
        + "".join(body)
        + f"</tbody></table></div>{notes}</figure>"
    )

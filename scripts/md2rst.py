"""Render docs/*.md as antsibull-docs extra docs (docs/docsite/rst/<name>.rst).

The Markdown files stay the single source (GitHub and the README link them); the collection
docsite that antsibull-docs builds takes extra docs only as RST under docs/docsite/rst/, so
`make docs-rst` (and the artifact and docsite builds, on their staged copies) render them here.

    md2rst.py OUT_DIR DOC.md [DOC.md ...]

Each document gets the label ansible_collections.iommu.host.docsite.<name> (antsibull-docs
requires that prefix); links to another rendered document become :ref: links, web links stay
links, links to anchors or to files outside the docsite become their plain text.
"""
import os
import re
import sys

import mistune
from mistune.renderers.rst import RSTRenderer

LABEL = "ansible_collections.iommu.host.docsite.%s"


class DocsiteRenderer(RSTRenderer):
    """mistune's RST renderer plus tables (as list-table) and docsite-aware links."""

    def __init__(self, names):
        super().__init__()
        self.names = names

    def link(self, token, state):
        text = self.render_children(token, state)
        url = token["attrs"]["url"]
        target = url.split("#", 1)[0]
        base = os.path.basename(target)
        if target and "/" not in target and base.endswith(".md") and base[:-3] in self.names:
            return ":ref:`%s <%s>`" % (_ref_text(text), LABEL % base[:-3])
        if re.match(r"https?://", url):
            return "`%s <%s>`__" % (_ref_text(text), url)
        return text

    def block_code(self, token, state):
        # A fence without a language is plain text (program output), not the docsite's
        # default YAML+Jinja.
        info = (token.get("attrs") or {}).get("info") or "text"
        lang = {"sh": "shell", "ini": "ini"}.get(info.split()[0], info.split()[0])
        code = "\n".join(("   " + line).rstrip() for line in token["raw"].rstrip("\n").split("\n"))
        return ".. code:: %s\n\n%s\n\n" % (lang, code)

    def image(self, token, state):
        return self.render_children(token, state)

    def codespan(self, token, state):
        # RST inline literals cannot start or end with a space and cannot contain backquotes
        # as their only delimiters; Markdown code spans can.
        text = (token["raw"].strip() or token["raw"]).replace("\\|", "|")   # GFM table escape
        if "`" in text:
            return ":literal:`%s`" % text.replace("\\", "\\\\").replace("`", "\\`")
        return "``%s``" % text

    def table(self, token, state):
        rows = []
        for part in token["children"]:
            if part["type"] == "table_head":
                rows.append([self._cell(c, state) for c in part["children"]])
            else:
                for row in part["children"]:
                    rows.append([self._cell(c, state) for c in row["children"]])
        out = [".. list-table::", "   :header-rows: 1", ""]
        for row in rows:
            for i, cell in enumerate(row):
                lines = cell.split("\n") or [""]
                prefix = "   * - " if i == 0 else "     - "
                out.append((prefix + lines[0]).rstrip())
                out.extend(("       " + line).rstrip() for line in lines[1:])
        return "\n".join(out) + "\n\n"

    def _cell(self, token, state):
        text = self.render_children(token, state).strip()
        return text if text else "\\ "


def _ref_text(text):
    return text.replace("<", "\\<").replace(">", "\\>").replace("`", "")


def render(md_text, name, names):
    markdown = mistune.create_markdown(renderer=DocsiteRenderer(names), plugins=["table", "strikethrough"])
    body = markdown(md_text)
    return ".. _%s:\n\n%s" % (LABEL % name, body.rstrip() + "\n")


def main(argv):
    out_dir, docs = argv[1], argv[2:]
    names = {os.path.splitext(os.path.basename(d))[0] for d in docs}
    os.makedirs(out_dir, exist_ok=True)
    for doc in docs:
        name = os.path.splitext(os.path.basename(doc))[0]
        with open(doc, encoding="utf-8") as f:
            rst = render(f.read(), name, names)
        with open(os.path.join(out_dir, name + ".rst"), "w", encoding="utf-8") as f:
            f.write(rst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

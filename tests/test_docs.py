"""docs/gradients.md stays true to the code, and the Markdown links of the repository land somewhere.

docs/gradients.md links each op to the line that defines it and to the test that checks it,
`[layer_norm_backward](../numpretrain/autograd/layer_norm.py#Lnnn)`, and quotes the NumPy of
each backward. Code moves, so these tests hold the document to the code:

- every `(../path#Lnnn)` link names a file that exists and a line that exists, and that line
  holds what the link text names: `def name`, `class name` or `name =` for a bare identifier
  (`test_softmax_gradcheck`), the text itself for anything else (`np.add.at(grad, index, g)`);
- every ```python block is made of lines of the source file linked last before it (under
  numpretrain/), in order, at or after the linked line (a line `...` marks a skip);
- every `(#anchor)` names one of its headings, and every op the engine builds with
  `Tensor.from_op(..., "name")` has a heading of that name;
- separately: every relative link in README.md and docs/*.md names a file (a line, a heading)
  that exists.

When code moves, a line link fails with the line it should point to now. To fix them all:

    python tests/test_docs.py          # every line link: ok, moved (and where to), or lost
    python tests/test_docs.py --fix    # rewrite the moved #Lnnn in docs/gradients.md

The tests read files only; they import nothing from numpretrain.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRADIENTS = ROOT / "docs" / "gradients.md"

# [text](target): the text may hold one level of brackets (`grad[index] = g`)
LINK = re.compile(r"\[((?:[^\[\]\n]|\[[^\[\]\n]*\])+)\]\(([^()\s]+)\)")
CODE_SPAN = re.compile(r"(`+)[^`\n]*?\1")
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
LINE_ANCHOR = re.compile(r"L(\d+)(?:-L?(\d+))?")


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def _rel(path):
    return path.relative_to(ROOT).as_posix()


def markdown_links(md_path):
    """(doc line number, text, target, (start, end) of the target on that line) for every link
    outside fenced code blocks and code spans."""
    links, fenced = [], False
    for n, line in enumerate(_lines(md_path), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        spans = [m.span() for m in CODE_SPAN.finditer(line)]
        for m in LINK.finditer(line):
            if any(a <= m.start() < b for a, b in spans):   # `x[i](j)` inside code is not a link
                continue
            links.append((n, m.group(1), m.group(2), m.span(2)))
    return links


def line_links(md_path=GRADIENTS):
    """The links with a #Lnnn anchor: (doc line, text, file Path, line number, target span, target)."""
    out = []
    for n, text, target, span in markdown_links(md_path):
        path, _, anchor = target.partition("#")
        m = LINE_ANCHOR.fullmatch(anchor)
        if m and not target.startswith(("http://", "https://")):
            out.append((n, text, (md_path.parent / path).resolve(), int(m.group(1)), span, target))
    return out


def holds(line, text):
    """Does this source line hold what the link text names?"""
    name = text.replace("`", "").strip()
    if IDENTIFIER.fullmatch(name):
        defines = re.search(rf"\b(?:def|class)\s+{name}\b", line)
        assigns = re.match(rf"\s*{name}\s*(?::[^=]*)?=(?!=)", line)        # a constant: IGNORE_INDEX = -100
        return bool(defines or assigns)
    return name in line


def locate(path, text, near):
    """The line of `path` that holds `text` nearest to line `near`, or None; and how many lines hold it."""
    found = [i for i, line in enumerate(_lines(path), 1) if holds(line, text)]
    if not found:
        return None, 0
    return min(found, key=lambda i: (abs(i - near), i)), len(found)


def check_line_link(md_path, n, text, path, line_no, target):
    """None when the link is right; else a message saying what to change."""
    where = f"{_rel(md_path)}:{n}: [{text}]({target})"
    if not path.is_file():
        return f"{where}: the file does not exist"
    lines = _lines(path)
    if line_no < 1 or line_no > len(lines):
        problem = f"the file has {len(lines)} lines"
    elif holds(lines[line_no - 1], text):
        return None
    else:
        problem = f"line {line_no} is {lines[line_no - 1].strip()!r}"
    best, count = locate(path, text, line_no)
    name = text.replace("`", "").strip()
    if best is None:
        return f"{where}: {problem}, and no line of the file holds {name!r}: rewrite the link"
    several = f" (nearest of {count} lines that hold it)" if count > 1 else ""
    return f"{where}: {problem}; {name!r} is at line {best}{several}: update the anchor to #L{best}"


def check_quotes(md_path=GRADIENTS):
    """Messages for quoted lines (```python blocks) that are not in the source linked just before."""
    problems, source, block, start = [], None, None, 0
    by_line = {}
    for n, text, path, line_no, _, _ in line_links(md_path):
        if path.is_relative_to(ROOT / "numpretrain"):
            by_line[n] = (path, line_no, n)     # the last such link of a doc line wins
    for n, line in enumerate(_lines(md_path), 1):
        if block is not None:
            if line.strip().startswith("```"):
                problems += _check_block(md_path, start, block, source)
                block = None
            else:
                block.append(line.strip())
        elif line.strip().startswith("```python"):
            block, start = [], n
        elif n in by_line:
            source = by_line[n]
    return problems


def _check_block(md_path, start, block, source):
    where = f"{_rel(md_path)}:{start}"
    if source is None:
        return [f"{where}: a ```python block with no link into numpretrain/ before it to say where it is from"]
    path, line_no, link_line = source
    if not path.is_file():
        return []                               # reported by the line-link test
    lines = [line.strip() for line in _lines(path)]
    position = max(line_no - 1, 0)
    for quoted in block:
        if quoted in ("", "..."):
            continue
        try:
            position = lines.index(quoted, position) + 1
        except ValueError:
            return [f"{where}: the quoted line {quoted!r} is not in {_rel(path)} after line {line_no} "
                    f"(the link at line {link_line}), in order: quote the code as it is now"]
    return []


def slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)     # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def anchors(md_path):
    """Every heading anchor of a Markdown file, with -1, -2 for repeated headings as GitHub does."""
    seen, out, fenced = {}, set(), False
    for line in _lines(md_path):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def engine_op_names():
    """The op names given to Tensor.from_op as string literals in numpretrain/autograd/
    (its last argument, after `backward,`: "add", or "gelu_tanh" if ... else "gelu_erf")."""
    names = set()
    for path in sorted((ROOT / "numpretrain" / "autograd").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for last_argument in re.findall(r"Tensor\.from_op\([^\n]*?\bbackward,([^\n]*)", source):
            names.update(re.findall(r"\"(\w+)\"", last_argument))
    return names


def broken_repository_links(md_paths):
    """Messages for relative links of these Markdown files whose file, line or heading does not exist."""
    problems = []
    for md_path in md_paths:
        for n, text, target, _ in markdown_links(md_path):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue                        # http:, mailto:, ... and anchors within the page
            path_part, _, anchor = target.partition("#")
            path = (md_path.parent / path_part).resolve()
            where = f"{_rel(md_path)}:{n}: [{text}]({target})"
            if not path.is_relative_to(ROOT):
                problems.append(f"{where}: points outside the repository")
            elif not path.exists():
                problems.append(f"{where}: {_rel(path)} does not exist")
            elif anchor and path.is_file():
                line_anchor = LINE_ANCHOR.fullmatch(anchor)
                if line_anchor:
                    last = max(int(g) for g in line_anchor.groups() if g)
                    count = len(_lines(path))
                    if last > count:
                        problems.append(f"{where}: {_rel(path)} has only {count} lines")
                elif path.suffix == ".md" and anchor not in anchors(path):
                    problems.append(f"{where}: {_rel(path)} has no heading with the anchor #{anchor}")
    return problems


# ----- the tests -----

def test_every_line_link_in_gradients_md_lands_on_what_it_names():
    links = line_links()
    assert len(links) > 50, "docs/gradients.md should link every op to its code and its test"
    problems = [p for n, text, path, line_no, _, target in links
                if (p := check_line_link(GRADIENTS, n, text, path, line_no, target))]
    assert not problems, ("links in docs/gradients.md have drifted (run `python tests/test_docs.py --fix`):\n"
                          + "\n".join(problems))


def test_quoted_code_in_gradients_md_is_verbatim():
    problems = check_quotes()
    assert not problems, "quoted code in docs/gradients.md differs from the source:\n" + "\n".join(problems)


def test_gradients_md_has_a_section_for_every_op_and_its_anchors_resolve():
    headings = anchors(GRADIENTS)
    missing_ops = sorted(engine_op_names() - headings)
    assert not missing_ops, f"ops built by Tensor.from_op with no section in docs/gradients.md: {missing_ops}"
    dangling = [f"{_rel(GRADIENTS)}:{n}: [{text}]({target})" for n, text, target, _ in markdown_links(GRADIENTS)
                if target.startswith("#") and target[1:] not in headings]
    assert not dangling, "links to headings that docs/gradients.md does not have:\n" + "\n".join(dangling)


def test_relative_links_in_readme_and_docs_exist():
    """README.md and docs/*.md: every link into the repository names a file (line, heading) that exists."""
    md_paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = broken_repository_links([p for p in md_paths if p.is_file()])
    assert not problems, "broken links:\n" + "\n".join(problems)


# ----- the helper for whoever updates the document -----

def main(argv):
    """Print every line link of docs/gradients.md with its state; with --fix, rewrite the moved ones."""
    fix = "--fix" in argv
    doc_lines = _lines(GRADIENTS)
    edits = []                                  # (doc line, (start, end), new target)
    counts = {"ok": 0, "moved": 0, "lost": 0}
    for n, text, path, line_no, span, target in line_links():
        shown = f"{_rel(GRADIENTS)}:{n}: [{text}]({target})"
        if path.is_file() and 1 <= line_no <= len(_lines(path)) and holds(_lines(path)[line_no - 1], text):
            counts["ok"] += 1
            print(f"ok     {shown}")
            continue
        best, count = locate(path, text, line_no) if path.is_file() else (None, 0)
        if best is None:
            counts["lost"] += 1
            print(f"LOST   {shown}: no line holds {text.replace('`', '')!r}; rewrite the link by hand")
            continue
        counts["moved"] += 1
        note = f" (nearest of {count})" if count > 1 else ""
        print(f"MOVED  {shown}: now #L{best}{note}")
        target = doc_lines[n - 1][span[0]:span[1]]
        edits.append((n, span, re.sub(r"#L\d+(?:-L?\d+)?$", f"#L{best}", target)))
    for n, (start, end), new in sorted(edits, key=lambda e: (e[0], -e[1][0])):   # right to left on a line
        doc_lines[n - 1] = doc_lines[n - 1][:start] + new + doc_lines[n - 1][end:]
    if fix and edits:
        GRADIENTS.write_text("\n".join(doc_lines) + "\n", encoding="utf-8")
    print(f"{counts['ok']} ok, {counts['moved']} moved, {counts['lost']} lost"
          + (f"; rewrote {len(edits)} anchors in {_rel(GRADIENTS)}" if fix and edits else
             "; run with --fix to rewrite the moved anchors" if edits else ""))
    for problem in check_quotes():
        print(f"QUOTE  {problem}")
    return 1 if counts["lost"] or (edits and not fix) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

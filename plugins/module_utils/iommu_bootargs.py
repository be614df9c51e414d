# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel boot arguments: parse, edit and apply them for grubby, GRUB and systemd-boot.

Pure functions on strings (no I/O) for the parsing and editing:

- :func:`tokenize` splits a command line into tokens the way the kernel does
  (whitespace separates, double quotes protect spaces), keeping every
  separator so that an edit changes only the tokens it touches.
- :func:`apply_args` makes arguments present or absent on a token list.
- :func:`edit_grub_default` edits one variable of a ``/etc/default/grub``
  text, keeping its shell quoting and every other line byte for byte.
- :func:`edit_kernel_cmdline` edits ``/etc/kernel/cmdline`` text.
- :func:`parse_grubby_info` parses ``grubby --info=ALL`` output.
- :func:`pending_args` compares the wanted state with ``/proc/cmdline``.

Malformed input raises :class:`BootArgsError` (with the line number);
nothing here raises anything else on arbitrary text.

:func:`run` is the module's body: it takes an AnsibleModule-like object and
the root directory of the host (the module always passes ``/``; tests pass a
fake root). Stdlib only, Python 3.9+ on the target.
"""

from __future__ import absolute_import, division, print_function

import glob
import os
import re
import tempfile

__metaclass__ = type

BOOTLOADERS = ("grubby", "grub", "systemd-boot")
GRUB_VARIABLES = ("GRUB_CMDLINE_LINUX_DEFAULT", "GRUB_CMDLINE_LINUX")
DEFAULT_GRUB_FILE = "/etc/default/grub"
GRUB_DROPIN_GLOB = "/etc/default/grub.d/*.cfg"
KERNEL_CMDLINE = "/etc/kernel/cmdline"
GRUB_CFG_CANDIDATES = ("/boot/grub2/grub.cfg", "/boot/grub/grub.cfg")

# shell characters a double-quoted string treats specially after a backslash
_DQ_ESCAPES = '$`"\\\n'
_WS = " \t\n\r\v\f"


class BootArgsError(Exception):
    """Malformed input; ``line`` is 1-based when known."""

    def __init__(self, message, path=None, line=None):
        self.message = message
        self.path = path
        self.line = line
        super(BootArgsError, self).__init__(self.describe())

    def describe(self):
        where = ""
        if self.path and self.line:
            where = "%s line %d: " % (self.path, self.line)
        elif self.path:
            where = "%s: " % self.path
        elif self.line:
            where = "line %d: " % self.line
        return where + self.message


# ---------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------

class Token(object):
    """One argument: ``pre`` (whitespace before it), ``raw`` (as written in its
    container, e.g. with shell escapes) and ``text`` (what the kernel sees)."""

    __slots__ = ("pre", "raw", "text")

    def __init__(self, pre, raw, text):
        self.pre = pre
        self.raw = raw
        self.text = text

    def __repr__(self):
        return "Token(%r, %r, %r)" % (self.pre, self.raw, self.text)

    def __eq__(self, other):
        return isinstance(other, Token) and (self.pre, self.raw, self.text) == (other.pre, other.raw, other.text)

    def __ne__(self, other):
        return not self == other

    __hash__ = None


class Cmdline(object):
    """Tokens plus the whitespace after the last one; ``str()`` gives back the raw text."""

    def __init__(self, tokens, trailing="", style="raw"):
        self.tokens = list(tokens)
        self.trailing = trailing
        self.style = style

    def raw(self):
        return "".join(t.pre + t.raw for t in self.tokens) + self.trailing

    def texts(self):
        return [t.text for t in self.tokens]

    def copy(self):
        return Cmdline([Token(t.pre, t.raw, t.text) for t in self.tokens], self.trailing, self.style)


def tokenize(raw, style="raw"):
    """Split ``raw`` into a :class:`Cmdline`.

    ``style`` is how ``raw`` is written: ``raw`` (the kernel's own syntax, as
    in /proc/cmdline), ``double`` (the inside of a shell double-quoted string:
    ``\\"`` is a kernel quote, ``\\$`` a dollar), ``single`` (inside shell
    single quotes: literal). Never raises; an unbalanced kernel quote runs to
    the end, as in the kernel (see :func:`check_quotes`).
    """
    tokens = []
    i, n = 0, len(raw)
    while True:
        start = i
        while i < n and raw[i] in _WS:
            i += 1
        pre = raw[start:i]
        if i >= n:
            return Cmdline(tokens, pre, style)
        tok_start = i
        text = []
        in_quote = False
        while i < n:
            c = raw[i]
            if style == "double" and c == "\\" and i + 1 < n:
                nxt = raw[i + 1]
                if nxt in _DQ_ESCAPES:
                    if nxt == "\n":       # line continuation: vanishes in the shell
                        i += 2
                        continue
                    text.append(nxt)
                else:
                    text.append(c)
                    text.append(nxt)
                if nxt == '"':
                    in_quote = not in_quote
                i += 2
                continue
            if c == '"':
                in_quote = not in_quote
            elif c in _WS and not in_quote:
                break
            text.append(c)
            i += 1
        tokens.append(Token(pre, raw[tok_start:i], "".join(text)))


def check_quotes(cmdline):
    """The first token with an unbalanced kernel double quote, or None."""
    for t in cmdline.tokens:
        if t.text.count('"') % 2:
            return t.text
    return None


def split_key(text):
    """``(key, value)`` of a token's kernel text; value None for a bare flag.

    The kernel drops a quote around the value (``key="a b"`` -> ``a b``) and a
    quote that opens the whole argument (``"key=a b"``).
    """
    s = text
    quoted = s.startswith('"')
    if quoted:
        s = s[1:]
    if "=" not in s:
        if quoted and s.endswith('"'):
            s = s[:-1]
        return s, None
    key, value = s.split("=", 1)
    if value.startswith('"'):
        value = value[1:]
    if value.endswith('"'):
        value = value[:-1]
    return key, value


def format_arg(key, value):
    """Kernel text for ``key``/``value``, quoting a value with whitespace."""
    if value is None:
        return key
    if any(c in _WS for c in value):
        value = '"%s"' % value
    return "%s=%s" % (key, value)


def encode(text, style):
    """Write kernel ``text`` for a container style (see :func:`tokenize`)."""
    if style == "double":
        return "".join("\\" + c if c in '$`"\\' else c for c in text)
    return text


_BAD_ARG_CHARS = set("'\\$`\x00")


def validate_arg(arg):
    """Check one ``key`` / ``key=value`` option; return ``(key, value)`` or raise BootArgsError."""
    if not isinstance(arg, str) or not arg:
        raise BootArgsError("empty argument")
    bad = sorted(set(arg) & _BAD_ARG_CHARS)
    if bad or any(ord(c) < 32 and c not in " \t" for c in arg):
        raise BootArgsError("argument %r contains %s: quotes other than a balanced double quote around a "
                            "value, backslashes, $, backticks and control characters are not supported"
                            % (arg, ", ".join(repr(c) for c in bad) or "a control character"))
    if arg.count('"') % 2:
        raise BootArgsError("argument %r has an unbalanced double quote" % arg)
    line = tokenize(arg)
    if len(line.tokens) != 1 or line.tokens[0].pre or line.trailing:
        raise BootArgsError("argument %r is not a single kernel argument (whitespace outside double quotes)"
                            % arg)
    key, value = split_key(arg)
    if not key or '"' in key or arg.startswith('"'):
        raise BootArgsError("argument %r: the key must be a non-empty word before '=' without quotes" % arg)
    if key == "--":
        raise BootArgsError("argument '--' ends the kernel's arguments and cannot be managed")
    if value is not None and '"' in value:
        raise BootArgsError("argument %r: a double quote may only enclose the whole value" % arg)
    return key, value


def _kernel_part(cmdline):
    """Index of the ``--`` token (arguments after it go to init), or len(tokens)."""
    for i, t in enumerate(cmdline.tokens):
        if t.text == "--":
            return i
    return len(cmdline.tokens)


def _group(args):
    """[(key, [values...])] in first-seen order."""
    order, groups = [], {}
    for key, value in args:
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(value)
    return [(k, groups[k]) for k in order]


def _present_ok(values, wanted):
    return len(values) >= len(wanted) and values[len(values) - len(wanted):] == wanted


def apply_args(cmdline, args, state):
    """A new :class:`Cmdline` with ``args`` (``[(key, value)]``) present or absent.

    present: the key's last occurrence(s) must have the wanted value(s) (the
    kernel's last-one-wins); otherwise every occurrence of the key is replaced
    by the wanted value(s), in place of the first one (appended when the key is
    missing). absent: value None removes the key whatever its value, else only
    ``key=value``. Arguments after ``--`` (for init) are never touched.
    Returns ``(new_cmdline, changes)``; ``changes`` lists ``+arg`` / ``-arg``.
    """
    new = cmdline.copy()
    changes = []
    style = new.style
    if state == "present":
        for key, wanted in _group(args):
            end = _kernel_part(new)
            idx = [i for i in range(end) if split_key(new.tokens[i].text)[0] == key]
            values = [split_key(new.tokens[i].text)[1] for i in idx]
            if _present_ok(values, wanted):
                continue
            texts = [format_arg(key, v) for v in wanted]
            for i in idx:
                changes.append("-" + new.tokens[i].text)
            changes.extend("+" + t for t in texts)
            fresh = [Token(" ", encode(t, style), t) for t in texts]
            if idx:
                fresh[0].pre = new.tokens[idx[0]].pre
                for i in reversed(idx[1:]):
                    _remove(new, i)
                new.tokens[idx[0]:idx[0] + 1] = fresh
            elif end < len(new.tokens):
                # insert before "--" (what follows it goes to init)
                fresh[0].pre = new.tokens[end].pre
                new.tokens[end].pre = " "
                new.tokens[end:end] = fresh
            else:
                fresh[0].pre = " " if new.tokens else ""
                new.tokens.extend(fresh)
    elif state == "absent":
        for key, value in args:
            end = _kernel_part(new)
            removed = []
            for i in reversed(range(end)):
                k, v = split_key(new.tokens[i].text)
                if k == key and (value is None or v == value):
                    removed.insert(0, "-" + new.tokens[i].text)
                    _remove(new, i)
            changes.extend(removed)
    else:
        raise BootArgsError("state must be present or absent, not %r" % (state,))
    return new, changes


def _remove(cmdline, i):
    """Drop token i and one separator (its own, or the next token's when it is the first)."""
    toks = cmdline.tokens
    if i == 0 and len(toks) > 1:
        toks[1].pre = toks[0].pre
    del toks[i]


def pending_args(proc_tokens, args, state):
    """Arguments of ``args`` (``[(key, value, original)]``) not in effect on a
    running kernel whose /proc/cmdline has ``proc_tokens`` (kernel texts)."""
    line = Cmdline([Token(" ", t, t) for t in proc_tokens])
    end = _kernel_part(line)
    pairs = [split_key(t.text) for t in line.tokens[:end]]
    pending = []
    if state == "present":
        grouped = _group([(k, v) for k, v, _x in args])
        wanted_ok = {}
        for key, wanted in grouped:
            values = [v for k, v in pairs if k == key]
            wanted_ok[key] = _present_ok(values, wanted)
        for key, value, orig in args:
            if not wanted_ok[key]:
                pending.append(orig)
    else:
        for key, value, orig in args:
            if any(k == key and (value is None or v == value) for k, v in pairs):
                pending.append(orig)
    return pending


# ---------------------------------------------------------------------------
# text files
# ---------------------------------------------------------------------------

def decode_text(data, path=None):
    """bytes -> str, or BootArgsError naming the line with a NUL or invalid UTF-8."""
    if isinstance(data, str):
        text = data
        if "\x00" in text:
            raise BootArgsError("binary content (NUL byte); refusing to edit", path,
                                text.count("\n", 0, text.index("\x00")) + 1)
        return text
    if b"\x00" in data:
        raise BootArgsError("binary content (NUL byte); refusing to edit", path,
                            data.count(b"\n", 0, data.index(b"\x00")) + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BootArgsError("not valid UTF-8 text (byte 0x%02x); refusing to edit" % data[e.start], path,
                            data.count(b"\n", 0, e.start) + 1)


def split_lines(text):
    """Lines with their endings (only ``\\n`` ends a line, as in the shell)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


_ASSIGN_RE = re.compile(r"^(?P<lead>[ \t]*(?:export[ \t]+)?)(?P<var>[A-Za-z_][A-Za-z0-9_]*)=(?P<rest>.*)$", re.S)


class Assignment(object):
    """``VAR=<value>`` on one line: prefix, quote style, inner raw value, suffix."""

    __slots__ = ("lineno", "head", "quote", "inner", "tail", "eol")

    def __init__(self, lineno, head, quote, inner, tail, eol):
        self.lineno = lineno
        self.head = head        # "  export VAR="
        self.quote = quote      # '"', "'" or ""
        self.inner = inner      # raw text between the quotes
        self.tail = tail        # whitespace / comment after the value
        self.eol = eol          # "\n", "\r\n" or ""

    def style(self):
        return {'"': "double", "'": "single"}.get(self.quote, "raw")

    def render(self, inner=None, quote=None):
        q = self.quote if quote is None else quote
        return "%s%s%s%s%s%s" % (self.head, q, self.inner if inner is None else inner, q, self.tail, self.eol)


def _parse_assignment(line, lineno, variable, path=None):
    """Assignment of ``variable`` on ``line``, None when the line does not assign it.
    Raises BootArgsError when it does but in a form this module cannot edit safely."""
    eol = ""
    body = line
    if body.endswith("\n"):
        body, eol = body[:-1], "\n"
        if body.endswith("\r"):
            body, eol = body[:-1], "\r\n"
    m = _ASSIGN_RE.match(body)
    if not m or m.group("var") != variable:
        return None
    head = body[:m.start("rest")]
    rest = m.group("rest")
    if rest[:1] == '"':
        i, n = 1, len(rest)
        while i < n and rest[i] != '"':
            i += 2 if rest[i] == "\\" else 1
        if i >= n:
            raise BootArgsError("unbalanced double quote in the value of %s (a value spanning lines is not "
                                "supported)" % variable, path, lineno)
        quote, inner, after = '"', rest[1:i], rest[i + 1:]
    elif rest[:1] == "'":
        j = rest.find("'", 1)
        if j < 0:
            raise BootArgsError("unbalanced single quote in the value of %s (a value spanning lines is not "
                                "supported)" % variable, path, lineno)
        quote, inner, after = "'", rest[1:j], rest[j + 1:]
    else:
        word = re.match(r"[^\s;#&|<>()]*", rest).group(0)
        if set(word) & set("\"'\\$`"):
            raise BootArgsError("unquoted value of %s contains quotes, backslashes or expansions; quote the "
                                "whole value to let this module edit it" % variable, path, lineno)
        quote, inner, after = "", word, rest[len(word):]
    if after and after[0] not in " \t;":
        raise BootArgsError("the value of %s continues after its end (%r); concatenated quoting or "
                            "unquoted special characters are not supported" % (variable, after[:20]), path, lineno)
    rest2 = after.lstrip(" \t")
    if rest2.startswith(";"):
        rest2 = rest2[1:].lstrip(" \t")
        if rest2 and not rest2.startswith("#"):
            raise BootArgsError("a command follows the assignment of %s on the same line" % variable, path, lineno)
    elif rest2 and not rest2.startswith("#"):
        raise BootArgsError("unexpected text after the value of %s: %r" % (variable, after[:40]), path, lineno)
    return Assignment(lineno, head, quote, inner, after, eol)


def find_assignments(text, variable, path=None, skip=()):
    """Every assignment of ``variable`` in a shell text (raises BootArgsError if one is malformed);
    lines in ``skip`` (inside a multi-line string, see :func:`shell_scan`) are not commands."""
    out = []
    for n, line in enumerate(split_lines(text), 1):
        if n in skip:
            continue
        a = _parse_assignment(line, n, variable, path)
        if a is not None:
            out.append(a)
    return out


def shell_scan(text):
    """A small shell lexer (comments, backslashes, single and double quotes).
    Returns ``(unclosed, inside)``: the line number where a quote opens that
    the text never closes (or None), and the set of line numbers that start
    inside a quoted string (their text is part of a value, not a command)."""
    i, n, line = 0, len(text), 1
    quote, opened = None, None
    inside = set()
    word_start = True
    while i < n:
        c = text[i]
        if quote is None:
            if c == "#" and word_start:
                j = text.find("\n", i)
                if j < 0:
                    break
                i = j
                continue
            if c == "\\":
                if i + 1 < n and text[i + 1] == "\n":
                    line += 1
                    inside.add(line)
                i += 2
                word_start = False
                continue
            if c in "\"'":
                quote, opened = c, line
            word_start = c in " \t\n;&|()"
        elif quote == "'":
            if c == "'":
                quote = None
        elif c == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                line += 1
                inside.add(line)
            i += 2
            continue
        elif c == '"':
            quote = None
        if c == "\n":
            line += 1
            if quote is not None:
                inside.add(line)
        i += 1
    return (opened if quote is not None else None), inside


def _self_reference(inner, variable):
    return ("$" + variable) in inner or ("${%s}" % variable) in inner


def edit_grub_default(text, variable, args, state, path=None):
    """Edit ``variable`` of an /etc/default/grub text.

    ``args`` is ``[(key, value)]``. present edits the last assignment (the one
    the shell keeps), appending ``VAR="..."`` at the end when there is none;
    absent edits every assignment. Every other line, and the quoting of the
    edited one, stays as it was. Returns ``(new_text, changes, linenos)``.
    Raises BootArgsError on malformed content (the caller leaves the file alone).
    """
    text = decode_text(text, path)
    lines = split_lines(text)
    unclosed, inside = shell_scan(text)
    if unclosed is not None:
        find_assignments(text, variable, path)     # a malformed assignment is the better message
        raise BootArgsError("a quote opened on this line is never closed (the shell cannot source the file)",
                            path, unclosed)
    assigns = find_assignments(text, variable, path, skip=inside)
    changes, touched = [], []
    if state == "present":
        targets = assigns[-1:]
    else:
        targets = assigns
    if state == "present" and not assigns:
        if lines and lines[-1].rstrip("\r\n").endswith("\\"):
            raise BootArgsError("the last line ends with a line continuation; cannot append %s safely"
                                % variable, path, len(lines))
        line = Cmdline([], "", "double")
        new, changes = apply_args(line, args, state)
        eol = "\r\n" if lines and lines[-1].endswith("\r\n") else "\n"
        prefix = "" if (not lines or lines[-1].endswith("\n")) else eol
        lines.append('%s%s="%s"%s' % (prefix, variable, new.raw(), eol))
        new_text = "".join(lines)
        return new_text, changes, [new_text.count("\n", 0, new_text.rindex(variable + '="')) + 1]
    for a in targets:
        line = tokenize(a.inner, a.style())
        bad = check_quotes(line)
        if bad is not None:
            raise BootArgsError("unbalanced double quote in argument %r of %s" % (bad, variable), path, a.lineno)
        new, ch = apply_args(line, args, state)
        if not ch:
            continue
        quote = a.quote
        if a.style() == "single" and any("'" in t.text for t in new.tokens):
            raise BootArgsError("cannot put a single quote inside the single-quoted %s" % variable, path, a.lineno)
        if quote == "" and (len(new.tokens) > 1 or new.trailing or any(t.pre for t in new.tokens)
                            or any(set(t.text) & set(_WS + '"') for t in new.tokens)):
            quote = '"'
            new = Cmdline([Token(t.pre, encode(t.text, "double"), t.text) for t in new.tokens], new.trailing, "double")
        lines[a.lineno - 1] = a.render(new.raw(), quote)
        changes.extend(ch)
        touched.append(a.lineno)
    return "".join(lines), changes, touched


def grub_dropin_findings(files, variable, args, state):
    """Drop-ins (``[(path, text)]``, in sourcing order) that set ``variable``:
    ``[(path, lineno, kind)]`` with kind ``overrides`` (replaces the value) or
    ``extends`` (refers to $VAR), plus ``contains`` when a drop-in still has an
    argument that state=absent removes. Never raises: an unreadable drop-in is
    ``unparsable``."""
    out = []
    for path, text in files:
        try:
            dec = decode_text(text, path)
            assigns = find_assignments(dec, variable, path, skip=shell_scan(dec)[1])
        except BootArgsError as e:
            out.append((path, e.line, "unparsable"))
            continue
        for a in assigns:
            out.append((path, a.lineno, "extends" if _self_reference(a.inner, variable) else "overrides"))
            if state == "absent":
                line = tokenize(a.inner, a.style())
                if apply_args(line, args, "absent")[1]:
                    out.append((path, a.lineno, "contains"))
    return out


def edit_kernel_cmdline(text, args, state, path=None):
    """Edit an /etc/kernel/cmdline text (one line). Returns ``(new_text, changes)``."""
    text = decode_text(text, path)
    lines = split_lines(text)
    content = [i for i, ln in enumerate(lines) if ln.strip(_WS)]
    if len(content) > 1:
        raise BootArgsError("expected a single line of kernel arguments, found another one", path, content[1] + 1)
    idx = content[0] if content else 0
    line_text = lines[idx] if lines else ""
    eol = ""
    if line_text.endswith("\n"):
        line_text, eol = line_text[:-1], "\n"
    line = tokenize(line_text)
    bad = check_quotes(line)
    if bad is not None:
        raise BootArgsError("unbalanced double quote in argument %r" % bad, path, idx + 1)
    new, changes = apply_args(line, args, state)
    if not changes:
        return text, changes
    if not lines:
        return new.raw() + "\n", changes
    lines[idx] = new.raw() + eol
    return "".join(lines), changes


def parse_grubby_info(output):
    """``grubby --info=ALL`` output -> ``[{index, kernel, args, ...}]`` (values unquoted).
    Never raises; entries without ``args`` (non-Linux entries) are kept without it."""
    entries, cur = [], None
    for line in output.splitlines():
        line = line.strip()
        if not line or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if key == "index":
            cur = {"index": value}
            entries.append(cur)
            continue
        if cur is None:
            cur = {}
            entries.append(cur)
        cur[key] = value
    return entries


def grubby_plan(entries, args, state):
    """Per Linux entry, ``(entry, before, after, changes)`` for entries that would change."""
    out = []
    for e in entries:
        if "args" not in e:
            continue
        line = tokenize(e["args"])
        new, changes = apply_args(line, args, state)
        if changes:
            out.append((e, e["args"], new.raw(), changes))
    return out


def grubby_commands(grubby, plan, args, state):
    """argv lists that bring every entry to the wanted state with ``--update-kernel=ALL``."""
    if not plan:
        return []
    if state == "present":
        replace = set()
        for _e, before, _a, _c in plan:
            line = tokenize(before)
            end = _kernel_part(line)
            have = [split_key(t) for t in line.texts()[:end]]
            for key, wanted in _group(args):
                values = [v for k, v in have if k == key]
                if values and not _present_ok(values, wanted):
                    replace.add(key)
        cmds = []
        if replace:
            cmds.append([grubby, "--update-kernel=ALL", "--remove-args=" + " ".join(
                k for k, _v in _group(args) if k in replace)])
        cmds.append([grubby, "--update-kernel=ALL", "--args=" + " ".join(format_arg(k, v) for k, v in args)])
        return cmds
    return [[grubby, "--update-kernel=ALL", "--remove-args=" + " ".join(format_arg(k, v) for k, v in args)]]


# ---------------------------------------------------------------------------
# files (used by the module; every path is below ``root``)
# ---------------------------------------------------------------------------

def host_path(root, path):
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def atomic_write(path, data):
    """Replace ``path`` with ``data``: temp file in the same directory, fsync,
    same mode and owner, os.replace, fsync of the directory. A symlink is
    followed (its target is replaced, the link stays)."""
    path = os.path.realpath(path)
    d = os.path.dirname(path)
    st = os.stat(path) if os.path.exists(path) else None
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def detect_bootloader(root, which):
    """grubby on PATH -> grubby; /etc/kernel/cmdline -> systemd-boot; /etc/default/grub -> grub.
    ``which(name)`` finds a command. Returns the name or raises BootArgsError."""
    if which("grubby"):
        return "grubby"
    if os.path.exists(host_path(root, KERNEL_CMDLINE)):
        return "systemd-boot"
    if os.path.exists(host_path(root, DEFAULT_GRUB_FILE)):
        return "grub"
    raise BootArgsError("no supported boot setup found: looked for the grubby command on PATH, %s "
                        "(systemd-boot/UKI) and %s (GRUB); set bootloader explicitly"
                        % (KERNEL_CMDLINE, DEFAULT_GRUB_FILE))


def grub_cfg_path(root, explicit=None):
    if explicit:
        return explicit
    for p in GRUB_CFG_CANDIDATES:
        if os.path.exists(host_path(root, p)):
            return p
    for p in GRUB_CFG_CANDIDATES:
        if os.path.isdir(host_path(root, os.path.dirname(p))):
            return p
    return None


def grub_regen_command(root, which, grub_cfg=None):
    """argv to regenerate grub.cfg, or raise BootArgsError saying what was looked for."""
    if not grub_cfg and which("update-grub"):
        return [which("update-grub")]
    cfg = grub_cfg_path(root, grub_cfg)
    tools = ("grub2-mkconfig", "grub-mkconfig") if cfg and "grub2" in cfg else ("grub-mkconfig", "grub2-mkconfig")
    for t in tools:
        if which(t):
            if not cfg:
                raise BootArgsError("%s found but no grub.cfg: looked for %s; set grub_cfg"
                                    % (t, ", ".join(GRUB_CFG_CANDIDATES)))
            return [which(t), "-o", cfg]
    raise BootArgsError("cannot regenerate the GRUB configuration: none of update-grub, grub2-mkconfig, "
                        "grub-mkconfig is on PATH (set update=false to only edit the file)")


def proc_cmdline(root):
    try:
        with open(host_path(root, "/proc/cmdline"), "rb") as f:
            return f.read().decode("utf-8", "replace").strip(_WS)
    except (IOError, OSError):
        return None


# ---------------------------------------------------------------------------
# the module's body
# ---------------------------------------------------------------------------

def parse_args_option(args):
    """Validate the ``args`` option: ``[(key, value, original)]`` or raise BootArgsError."""
    if not args:
        raise BootArgsError("args must list at least one argument")
    out = []
    for a in args:
        key, value = validate_arg(a)
        out.append((key, value, a))
    return out


def _diff(path, before, after):
    return {"before_header": path, "after_header": path, "before": before, "after": after}


class _Fail(Exception):
    def __init__(self, msg, **kw):
        Exception.__init__(self, msg)
        self.msg = msg
        self.kw = kw


def run(module, root="/"):
    """Do what the module's parameters ask; returns the result dict or calls module.fail_json."""
    result = {"changed": False, "bootloader": None, "reboot_required": False, "cmdline": None,
              "pending": [], "files": [], "backup_files": [], "commands": [], "warnings": []}
    try:
        _run(module, root, result)
    except BootArgsError as e:
        module.fail_json(msg=e.describe(), **_public(result, module))
    except _Fail as e:
        out = _public(result, module)
        out.update(e.kw)
        module.fail_json(msg=e.msg, **out)
    return _public(result, module)


def _public(result, module):
    """The result for exit_json/fail_json: ``warnings`` go through module.warn()
    (Ansible shows them and returns them as ``warnings``)."""
    out = dict(result)
    for w in out.pop("warnings", ()):
        module.warn(w)
    return out


def _run(module, root, result):
    p = module.params
    state = p["state"]
    args = parse_args_option(p["args"])
    pairs = [(k, v) for k, v, _o in args]
    warnings = result["warnings"]

    loader = p["bootloader"]
    if loader == "auto":
        loader = detect_bootloader(root, module.get_bin_path)
    result["bootloader"] = loader

    cmdline = proc_cmdline(root)
    result["cmdline"] = cmdline
    if cmdline is None:
        warnings.append("cannot read /proc/cmdline; reboot_required assumes every argument is pending")
        result["pending"] = [o for _k, _v, o in args]
    else:
        result["pending"] = pending_args(tokenize(cmdline).texts(), args, state)
    result["reboot_required"] = bool(result["pending"])

    if loader == "grubby":
        _run_grubby(module, pairs, state, result)
    elif loader == "grub":
        _run_grub(module, root, pairs, state, result)
    else:
        _run_sdboot(module, root, pairs, state, result)


def _edit_file(module, path, before, after, result):
    """Back up and atomically replace one file (not in check mode)."""
    result["files"].append(path)
    if module._diff:
        result.setdefault("diff", []).append(_diff(path, before.decode("utf-8"), after.decode("utf-8")))
    if module.check_mode:
        return
    if module.params["backup"]:
        result["backup_files"].append(module.backup_local(path))
    atomic_write(path, after)


def _run_cmd(module, argv, result, restore=None):
    result["commands"].append(" ".join(argv))
    if module.check_mode:
        return
    rc, out, err = module.run_command(argv)
    if rc != 0:
        restored = []
        for path, data in restore or ():
            atomic_write(path, data)
            restored.append(path)
        raise _Fail("%s failed (rc=%d)%s" % (
            argv[0], rc, "; restored %s to its previous content" % ", ".join(restored) if restored else ""),
            rc=rc, stdout=out, stderr=err, cmd=argv)


def _run_grub(module, root, pairs, state, result):
    p = module.params
    variable = p["grub_variable"]
    rel = p["grub_file"] or DEFAULT_GRUB_FILE
    path = host_path(root, rel)
    if not os.path.exists(path):
        raise BootArgsError("%s does not exist (bootloader grub); set grub_file" % path)
    before = read_bytes(path)
    after_text, _changes, _lines = edit_grub_default(before, variable, pairs, state, path)
    after = after_text.encode("utf-8")

    dropins = sorted(glob.glob(host_path(root, GRUB_DROPIN_GLOB)))
    own = os.path.abspath(path)
    if own in [os.path.abspath(d) for d in dropins]:
        dropins = dropins[dropins.index(own) + 1:]
    files = []
    for d in dropins:
        try:
            files.append((d, read_bytes(d)))
        except (IOError, OSError) as e:
            result["warnings"].append("cannot read %s: %s" % (d, e))
    for dpath, lineno, kind in grub_dropin_findings(files, variable, pairs, state):
        if kind == "overrides":
            result["warnings"].append(
                "%s line %d sets %s again and is sourced after %s, so its value wins: the arguments edited "
                "here do not reach the kernel; edit that file (grub_file=%s) or remove the setting"
                % (dpath, lineno, variable, path, dpath))
        elif kind == "contains":
            result["warnings"].append("%s line %d still adds an argument that state=absent removes"
                                      % (dpath, lineno))
        elif kind == "unparsable":
            result["warnings"].append("%s sets %s in a form this module cannot read (line %s)"
                                      % (dpath, variable, lineno))

    if before == after:
        return
    result["changed"] = True
    regen = None
    if p["update"]:
        regen = grub_regen_command(root, module.get_bin_path, p["grub_cfg"])
    _edit_file(module, path, before, after, result)
    if regen:
        _run_cmd(module, regen, result, restore=[(path, before)])


def _run_sdboot(module, root, pairs, state, result):
    path = host_path(root, KERNEL_CMDLINE)
    before = read_bytes(path) if os.path.exists(path) else None
    if before is None:
        cur = proc_cmdline(root) or ""
        raise BootArgsError("%s does not exist; create it (e.g. from /proc/cmdline: %r) to manage "
                            "systemd-boot/UKI arguments" % (path, cur[:200]))
    after_text, _changes = edit_kernel_cmdline(before, pairs, state, path)
    after = after_text.encode("utf-8")
    if before == after:
        return
    result["changed"] = True
    _edit_file(module, path, before, after, result)
    if not module.params["update"]:
        return
    ki = module.get_bin_path("kernel-install")
    release = os.uname()[2]
    image = None
    for d in ("/lib/modules", "/usr/lib/modules"):
        cand = host_path(root, "%s/%s/vmlinuz" % (d, release))
        if os.path.exists(cand):
            image = "%s/%s/vmlinuz" % (d, release)
            break
    if ki and image:
        _run_cmd(module, [ki, "add", release, image], result, restore=[(path, before)])
    else:
        result["warnings"].append(
            "%s was edited but not applied: %s; run 'kernel-install add %s /lib/modules/%s/vmlinuz' "
            "(or rebuild the UKI / 'bootctl' entry) before rebooting"
            % (path, "kernel-install is not on PATH" if not ki else "no vmlinuz for the running kernel %s"
               % release, release, release))


def _run_grubby(module, pairs, state, result):
    grubby = module.get_bin_path("grubby", required=True)
    rc, out, err = module.run_command([grubby, "--info=ALL"])
    if rc != 0:
        raise _Fail("grubby --info=ALL failed (rc=%d)" % rc, rc=rc, stdout=out, stderr=err)
    entries = parse_grubby_info(out)
    if not any("args" in e for e in entries):
        raise BootArgsError("grubby --info=ALL listed no kernel with args")
    plan = grubby_plan(entries, pairs, state)
    if not plan:
        return
    result["changed"] = True
    result["files"].extend(e.get("kernel", "index %s" % e.get("index")) for e, _b, _a, _c in plan)
    if module._diff:
        result.setdefault("diff", []).append({
            "before_header": "grubby --info=ALL", "after_header": "grubby --info=ALL",
            "before": "".join("%s: %s\n" % (e.get("kernel"), b) for e, b, _a, _c in plan),
            "after": "".join("%s: %s\n" % (e.get("kernel"), a) for e, _b, a, _c in plan)})
    for argv in grubby_commands(grubby, plan, pairs, state):
        _run_cmd(module, argv, result)

"""The documentation contract of the collection's filter plugins (tests/unit/test_filter_docs.py).

Each plugins/filter/<name>.py holds exactly one filter, <name>, and documents it in module-level
string constants DOCUMENTATION, EXAMPLES and RETURN (the form ansible-core's ansible-doc reads for
a filter file named like its filter); no .yml sidecar next to it, so ansible-doc and Galaxy list
the filter once. doc_problems() lists every way a file breaks that contract.
"""
import ast
import importlib.util
import inspect
import os

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER_DIR = os.path.join(REPO, "plugins", "filter")
DOC_KEYS = ("DOCUMENTATION", "EXAMPLES", "RETURN")
# option types ansible-doc and antsibull-docs accept (ansible-core's argument spec types)
OPTION_TYPES = ("any", "bits", "bool", "bytes", "dict", "float", "int", "json", "jsonarg", "list", "path", "raw",
                "sid", "str", "tmppath", "pathspec", "pathlist")


def filter_names(directory=FILTER_DIR):
    return sorted(f[:-3] for f in os.listdir(directory) if f.endswith(".py") and not f.startswith("_"))


def doc_constants(path):
    """The DOCUMENTATION/EXAMPLES/RETURN module-level assignments, read from the source as ansible-doc
    does (AST, no import): name -> the string, or None when the value is not a string literal."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id in DOC_KEYS:
                value = node.value
                found[target.id] = value.value if isinstance(value, ast.Constant) and isinstance(
                    value.value, str) else None
    return found


def parsed_docs(path):
    """DOCUMENTATION, EXAMPLES and RETURN of the filter file, each parsed with yaml.safe_load."""
    return {key: yaml.safe_load(text) for key, text in doc_constants(path).items() if text is not None}


def _load(path, name):
    spec = importlib.util.spec_from_file_location("_iommu_host_doccheck_%s_%d" % (name, id(path)), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def doc_problems(path):
    """Every way the filter file at ``path`` breaks the contract (see the module docstring); [] if none."""
    directory, base = os.path.split(path)
    name = base[:-3]
    problems = []
    for ext in (".yml", ".yaml"):
        if os.path.exists(os.path.join(directory, name + ext)):
            problems.append("sidecar %s%s: ansible-doc and Galaxy would list the filter twice" % (name, ext))
    consts = doc_constants(path)
    docs = {}
    for key in DOC_KEYS:
        if key not in consts:
            problems.append("no module-level %s" % key)
        elif consts[key] is None:
            problems.append("%s is not a string literal (ansible-doc reads it without importing)" % key)
        else:
            try:
                docs[key] = yaml.safe_load(consts[key])
            except yaml.YAMLError as e:
                problems.append("%s is not valid YAML: %s" % (key, str(e).replace("\n", " ")))

    # the filter itself: exactly one, named like the file
    try:
        filters = _load(path, name).FilterModule().filters()
    except Exception as e:  # pylint: disable=broad-except
        return problems + ["cannot load FilterModule().filters(): %s: %s" % (type(e).__name__, e)]
    if sorted(filters) != [name]:
        problems.append("FilterModule().filters() exposes %s, not exactly [%r]" % (sorted(filters), name))
    func = filters.get(name)
    if not callable(func):
        return problems + ["no callable filter %r" % name]
    params = list(inspect.signature(func).parameters.values())
    if not params:
        return problems + ["filter %r takes no input" % name]
    # option name -> the signature's parameter; the first parameter is the piped value, _input
    sig = dict([("_input", params[0])] + [(p.name, p) for p in params[1:]])

    doc = docs.get("DOCUMENTATION")
    if "DOCUMENTATION" in docs:
        if not isinstance(doc, dict):
            problems.append("DOCUMENTATION is not a mapping")
            doc = None
    if doc is not None:
        if doc.get("name") != name:
            problems.append("DOCUMENTATION name is %r, not %r" % (doc.get("name"), name))
        for key in ("short_description", "description", "version_added", "author"):
            if not doc.get(key):
                problems.append("DOCUMENTATION has no %s" % key)
        options = doc.get("options") or {}
        if not isinstance(options, dict):
            problems.append("DOCUMENTATION options is not a mapping")
            options = {}
        if sorted(options) != sorted(sig):
            problems.append("documented options %s differ from the filter's parameters %s"
                            % (sorted(options), sorted(sig)))
        for opt, spec in options.items():
            p = sig.get(opt)
            if p is None or not isinstance(spec, dict):
                continue
            required = p.default is inspect.Parameter.empty
            if bool(spec.get("required", False)) != required:
                problems.append("option %s: required is %r but the parameter %s a default"
                                % (opt, spec.get("required", False), "has no" if required else "has"))
            if not spec.get("description") or not spec.get("type"):
                problems.append("option %s: no description or type" % opt)
            elif spec["type"] not in OPTION_TYPES:
                problems.append("option %s: type %r is not one of %s" % (opt, spec["type"], ", ".join(OPTION_TYPES)))
            if "default" in spec and p.default not in (None, inspect.Parameter.empty) \
                    and spec["default"] != p.default:
                problems.append("option %s: documented default %r, the parameter's is %r"
                                % (opt, spec["default"], p.default))
            if "choices" in spec and "default" in spec and spec["default"] not in spec["choices"]:
                problems.append("option %s: default %r is not one of the choices" % (opt, spec["default"]))
        # positional arguments: the piped value, then every parameter without a default, in order
        want = ["_input"] + [p.name for p in params[1:] if p.default is inspect.Parameter.empty]
        got = [s.strip() for s in str(doc.get("positional", "")).split(",") if s.strip()]
        if got != want:
            problems.append("positional is %r, the signature says %r" % (", ".join(got), ", ".join(want)))

    examples = docs.get("EXAMPLES")
    if "EXAMPLES" in docs:
        if not isinstance(examples, list) or not examples or not all(
                isinstance(t, dict) and t.get("name") for t in examples):
            problems.append("EXAMPLES is not a list of named tasks")
        if "iommu.host.%s" % name not in consts["EXAMPLES"]:
            problems.append("EXAMPLES never use iommu.host.%s" % name)

    ret = docs.get("RETURN")
    if "RETURN" in docs:
        value = ret.get("_value") if isinstance(ret, dict) else None
        if not isinstance(value, dict) or not value.get("description") or not value.get("type"):
            problems.append("RETURN has no _value with a description and a type")
    return problems

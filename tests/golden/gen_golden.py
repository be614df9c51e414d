#!/usr/bin/env python
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Golden vectors for plugins/module_utils/decode/, computed by the kernel's own macros.

What it does
------------
1. Unpacks Debian's ``linux-source-7.3`` package (``dpkg-deb -x``) into a temporary
   directory and extracts only the headers it needs (plus the top Makefile for the
   version) from ``usr/src/linux-source-7.3.tar.xz``:

   * drivers/iommu/intel/iommu.h                  -> every ``#define cap_*`` / ``ecap_*``
   * drivers/iommu/amd/amd_iommu_types.h          -> every ``#define FEATURE_*``
   * drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h  -> every ``#define IDRn_*`` / ``IIDR_*``

2. Writes a C program that contains those ``#define`` lines *verbatim* (plus small
   shims for BIT/BIT_ULL/GENMASK/GENMASK_ULL/FIELD_GET), evaluates every macro on a
   fixed set of vectors (all-zero, all-ones, walking single bits, alternating
   patterns, seeded random values, real register values), compiles it with gcc and
   runs it.  For a mask macro (``FEATURE_HATS``, ``IDR1_SIDSIZE`` ...) the value
   recorded is ``FIELD_GET(mask, reg)``, i.e. what the kernel code reads out of
   the register; function-like macros (``cap_mgaw(c)``, ``FEATURE_SNPAVICSUP_GAM(x)``)
   are called on the register.  Plain numeric constants of the SMMUv3 header
   (``IDR0_TTENDIAN_LE`` ...) are recorded as field value names.

3. Writes JSON under tests/fixtures/golden/: ``vtd.json``, ``amd.json``,
   ``smmuv3.json`` (source package and kernel version, header sha256, the macro
   list with line numbers and definitions, the vectors with every macro's value)
   and ``macro_names.json`` (the macro names only).  tests/unit/test_decode_golden.py
   checks the decoder against them, including that it has a key for every macro,
   so a macro added by a newer kernel fails the test until the decoder maps it.

Re-run
------
    python tests/golden/gen_golden.py                 # the .deb in /var/cache/iommu-host/debs
    python tests/golden/gen_golden.py --deb PATH.deb  # another linux-source .deb
    python tests/golden/gen_golden.py --src DIR       # an unpacked kernel tree instead

Needs dpkg-deb, tar with xz support and gcc (all in Debian's build-essential).
The output is deterministic: the random vectors come from a fixed seed.
"""

import argparse
import glob
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "golden")
DEB_GLOB = "/var/cache/iommu-host/debs/linux-source-7.3_*_all.deb"
SEED = 0x10AA0D3C  # fixed: the random vectors must not change between runs
N_RANDOM = 12

HEADERS = {
    "vtd": "drivers/iommu/intel/iommu.h",
    "amd": "drivers/iommu/amd/amd_iommu_types.h",
    "smmuv3": "drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h",
}

# Real register values: the test bed and public logs.  "source" says where each came from.
REAL_VTD = [
    {
        "name": "qemu_intel_iommu_intremap_caching_mode",
        "cap": 0xd2008c22260286, "ecap": 0xf00f4a,
        "source": "iommu.host test bed: QEMU -device intel-iommu,intremap=on,caching-mode=on "
                  "(sysfs /sys/class/iommu/dmar0/intel-iommu/{cap,ecap})",
        "expected": {"mgaw": 39, "sagaw_widths": [39], "caching_mode": True, "smts": False},
    },
    {
        "name": "qemu_intel_iommu_scalable_aw48",
        "cap": 0xd2008c222f0686, "ecap": 0x480080f00f4a,
        "source": "iommu.host test bed: QEMU -device intel-iommu,intremap=on,caching-mode=on,"
                  "x-scalable-mode=on,aw-bits=48",
        "expected": {"mgaw": 48, "sagaw_widths": [39, 48], "caching_mode": True, "smts": True},
    },
    {
        "name": "intel_xeon_server_dmar_ver1",
        "cap": 0x8d2078c106f0466, "ecap": 0xf020df,
        "source": "dmesg of a multi-socket Intel Xeon server (dmar0..dmar7, 'ver 1:0 cap "
                  "8d2078c106f0466 ecap f020df'), GitHub utcs-scea/LAKE issue #10 "
                  "(https://github.com/utcs-scea/LAKE/issues/10)",
        "expected": {"mgaw": 48, "sagaw_widths": [48], "caching_mode": False, "smts": False},
    },
    {
        "name": "intel_xeon_scalable_dmar_ver6",
        "cap": 0x9ed008c40780466, "ecap": 0x3ee9e86f050df,
        "source": "dmesg 'DMAR: dmar0: reg_base_addr aa3fc000 ver 6:0 cap 9ed008c40780466 ecap "
                  "3ee9e86f050df' in GitHub sharathdm/x86_ir_table README.md (VT-d 6.0, "
                  "scalable-mode capable Xeon)",
        "expected": {"mgaw": 57, "sagaw_widths": [48], "caching_mode": False, "smts": True},
    },
]

REAL_AMD = [
    {
        "name": "qemu_amd_iommu",
        "efr": 0x29d3, "efr2": 0x0,
        "source": "iommu.host test bed: QEMU -device amd-iommu; kernel prints "
                  "'AMD-Vi: Extended features (0x29d3, 0x0): PreF PPR GT IA GA HE'",
        "printed": ["PreF", "PPR", "GT", "IA", "GA", "HE"],
    },
    {
        "name": "amd_epyc_multisegment",
        "efr": 0xa5bf732fa2295afe, "efr2": 0x0,
        "source": "EPYC server dmesg 'AMD-Vi: Extended features (0xa5bf732fa2295afe): PPR X2APIC "
                  "NX GT [5] IA GA PC GA_vAPIC' (Linux 5.15, which printed neither EFR2 nor SNP), "
                  "GitHub openvelinux/kernel pull request #50 "
                  "(https://github.com/openvelinux/kernel/pull/50); EFR2 not printed, 0 assumed",
        "printed": ["PPR", "X2APIC", "NX", "GT", "[5]", "IA", "GA", "PC", "GA_vAPIC"],
        "printed_by": "5.15 (no SNP / SEV-TIO names yet); 7.3 adds SNP for bit 63",
    },
    {
        "name": "amd_epyc_genoa_snp_host",
        "efr": 0xa5bf7320a2294aee, "efr2": 0x1d,
        "source": "AMD Genoa SEV-SNP host dmesg 'AMD-Vi: Extended features (0xa5bf7320a2294aee, "
                  "0x1d): PPR X2APIC NX [5] IA GA PC GA_vAPIC SNP' (Linux 6.9), GitHub "
                  "permaweb/hb-os README.md",
        "printed": ["PPR", "X2APIC", "NX", "[5]", "IA", "GA", "PC", "GA_vAPIC", "SNP"],
    },
]

REAL_SMMUV3 = [
    {
        "name": "qemu_smmuv3_stage1_only",
        "idr": [0x0D40101A, 0x02730010, 0x0, 0x00000404, 0x0, 0x00000054],
        "iidr": 0x0, "aidr": 0x1,
        "source": "DERIVED, not a hardware read-out: the reset values QEMU's emulated SMMUv3 "
                  "programs in smmuv3_init_regs() (GitHub qemu/qemu hw/arm/smmuv3.c at commit "
                  "017a913af4dff47ac5e62be613b9f8b88fc8fa96: S1P, TTF=AArch64, COHACC, ASID16, "
                  "TTENDIAN=LE, STALL_MODEL=1, TERM_MODEL, ST_LEVEL=2LVL; SIDSIZE 16, EVENTQS 19, "
                  "CMDQS 19; RIL, HAD; GRAN4K, GRAN64K, OAS=4 (44 bits); AIDR 1)",
    },
]

SHIMS = r"""
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
/* Shims for the kernel helpers the macros use (include/linux/bits.h, bitfield.h). */
#define BIT(nr)            (1UL << (nr))
#define BIT_ULL(nr)        (1ULL << (nr))
#define GENMASK(h, l)      (((~0UL) << (l)) & (~0UL >> (8 * sizeof(unsigned long) - 1 - (h))))
#define GENMASK_ULL(h, l)  (((~0ULL) << (l)) & (~0ULL >> (64 - 1 - (h))))
#define FIELD_GET(_mask, _reg) \
        ((__typeof__(_mask))(((_reg) & (_mask)) >> __builtin_ctzll((unsigned long long)(_mask))))
typedef uint64_t u64;
typedef uint32_t u32;
"""


def log(msg):
    sys.stderr.write("gen_golden: %s\n" % msg)


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, **kw)


# ---------------------------------------------------------------------------------------------
# Source extraction
# ---------------------------------------------------------------------------------------------

def extract_tree(deb, workdir):
    """Unpack the .deb and the needed members of the source tarball; return (tree, deb_version)."""
    debdir = os.path.join(workdir, "deb")
    run(["dpkg-deb", "-x", deb, debdir])
    version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], check=True,
                             stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    tarballs = sorted(glob.glob(os.path.join(debdir, "usr", "src", "linux-source-*.tar.xz")))
    if not tarballs:
        raise SystemExit("no usr/src/linux-source-*.tar.xz in %s" % deb)
    tarball = tarballs[-1]
    top = os.path.basename(tarball)[:-len(".tar.xz")]
    members = [top + "/Makefile"] + [top + "/" + h for h in HEADERS.values()]
    srcdir = os.path.join(workdir, "src")
    os.makedirs(srcdir)
    run(["tar", "-xJf", tarball, "-C", srcdir] + members)
    return os.path.join(srcdir, top), version, os.path.basename(tarball)


def kernel_version(tree):
    fields = {}
    with open(os.path.join(tree, "Makefile")) as f:
        for line in f:
            m = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)", line)
            if m:
                fields[m.group(1)] = m.group(2)
            if len(fields) == 4:
                break
    return "%s.%s.%s%s" % (fields.get("VERSION", "?"), fields.get("PATCHLEVEL", "?"),
                           fields.get("SUBLEVEL", "?"), fields.get("EXTRAVERSION", ""))


def read_defines(path, name_re):
    """Every '#define NAME...' whose NAME matches name_re, continuation lines joined.

    Returns a list of dicts: name, params (None for object-like), body, text (verbatim,
    continuation lines included), line (1-based), comment (last /* */ comment line seen).
    """
    with open(path) as f:
        lines = f.read().split("\n")
    out = []
    comment = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("/*"):
            text = stripped.strip("/* ").strip()
            if text:
                comment = text
        m = re.match(r"^#define\s+(\w+)(\(([^)]*)\))?(.*)$", line)
        if m and re.match(name_re, m.group(1)):
            start = i
            text_lines = [line]
            while text_lines[-1].endswith("\\"):
                i += 1
                text_lines.append(lines[i])
            body = " ".join(l.rstrip("\\").strip() for l in [m.group(4)] + text_lines[1:])
            body = re.sub(r"/\*.*?\*/", "", body).strip()
            out.append({
                "name": m.group(1),
                "params": m.group(3),
                "body": body,
                "text": "\n".join(text_lines),
                "line": start + 1,
                "comment": comment,
            })
        i += 1
    return out


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Vectors
# ---------------------------------------------------------------------------------------------

def generic_vectors(bits):
    mask = (1 << bits) - 1
    rep = bits // 8
    vecs = [("zero", 0), ("ones", mask)]
    vecs += [("bit%d" % b, 1 << b) for b in range(bits)]
    for name, byte in (("alt_55", 0x55), ("alt_aa", 0xAA), ("nibble_0f", 0x0F), ("nibble_f0", 0xF0),
                       ("alt_33", 0x33), ("alt_cc", 0xCC)):
        vecs.append((name, int(("%02x" % byte) * rep, 16)))
    vecs.append(("bytes_00ff", int("00ff" * (rep // 2), 16)))
    vecs.append(("bytes_ff00", int("ff00" * (rep // 2), 16)))
    rng = random.Random(SEED + bits)
    for k in range(N_RANDOM):
        vecs.append(("random%02d" % k, rng.getrandbits(bits)))
    return vecs


def c_u64(v):
    return "0x%xULL" % v


# ---------------------------------------------------------------------------------------------
# Per-vendor C generation
# ---------------------------------------------------------------------------------------------

def classify_mask(body):
    """True if a define's body is a field mask (GENMASK/BIT/shift), False for a plain number."""
    if re.search(r"GENMASK|BIT|<<", body):
        return True
    if re.match(r"^\(?\s*(0x[0-9a-fA-F]+|\d+)[uUlL]*\s*\)?$", body):
        return False
    raise SystemExit("cannot classify define body %r; extend gen_golden.classify_mask" % body)


def vtd_program(defs, vectors):
    src = [SHIMS, "/* ---- verbatim from drivers/iommu/intel/iommu.h ---- */"]
    src += [d["text"] for d in defs]
    src.append("static const u64 vec[][2] = {")
    src += ["\t{%s, %s}," % (c_u64(c), c_u64(e)) for (_n, c, e) in vectors]
    src.append("};")
    src.append("int main(void) {\n\tfor (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {")
    src.append("\t\tu64 c = vec[i][0], e = vec[i][1]; (void)c; (void)e;")
    for d in defs:
        arg = "c" if d["name"].startswith("cap_") else "e"
        src.append('\t\tprintf("%%zu\\t%s\\t%%llu\\n", i, (unsigned long long)(%s(%s)));'
                   % (d["name"], d["name"], arg))
    src.append("\t}\n\treturn 0;\n}")
    return "\n".join(src) + "\n"


def amd_register(d):
    return "efr2" if "Feature 2" in d["comment"] else "efr"


def amd_program(defs, vectors):
    src = [SHIMS, "/* ---- verbatim from drivers/iommu/amd/amd_iommu_types.h ---- */"]
    src += [d["text"] for d in defs]
    src.append("static const u64 vec[][2] = {")
    src += ["\t{%s, %s}," % (c_u64(a), c_u64(b)) for (_n, a, b) in vectors]
    src.append("};")
    src.append("int main(void) {")
    for d in defs:
        if d["params"] is None:
            src.append('\tprintf("mask\\t%s\\t%%llu\\n", (unsigned long long)(%s));' % (d["name"], d["name"]))
    src.append("\tfor (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {")
    src.append("\t\tu64 efr = vec[i][0], efr2 = vec[i][1]; (void)efr; (void)efr2;")
    for d in defs:
        reg = amd_register(d)
        if d["params"] is None:
            expr = "FIELD_GET(%s, %s)" % (d["name"], reg)
        else:
            expr = "%s(%s)" % (d["name"], reg)
        src.append('\t\tprintf("%%zu\\t%s\\t%%llu\\n", i, (unsigned long long)(%s));' % (d["name"], expr))
    src.append("\t}\n\treturn 0;\n}")
    return "\n".join(src) + "\n"


def smmu_register(name):
    m = re.match(r"^IDR(\d)_", name)
    if m:
        return "idr%s" % m.group(1)
    return "iidr"


def smmu_program(fields, consts, vectors):
    src = [SHIMS, "/* ---- verbatim from drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h ---- */"]
    src += [d["text"] for d in fields + consts]
    src.append("static const u32 vec[][8] = {")
    for (_n, idr, iidr, aidr) in vectors:
        src.append("\t{%s}," % ", ".join("0x%xU" % v for v in list(idr) + [iidr, aidr]))
    src.append("};")
    src.append("int main(void) {")
    for d in fields + consts:
        src.append('\tprintf("mask\\t%s\\t%%llu\\n", (unsigned long long)(%s));' % (d["name"], d["name"]))
    src.append("\tfor (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {")
    src.append("\t\tconst u32 *r = vec[i];")
    for d in fields:
        reg = smmu_register(d["name"])
        idx = 6 if reg == "iidr" else int(reg[3:])
        src.append('\t\tprintf("%%zu\\t%s\\t%%llu\\n", i, (unsigned long long)FIELD_GET(%s, r[%d]));'
                   % (d["name"], d["name"], idx))
    src.append("\t}\n\treturn 0;\n}")
    return "\n".join(src) + "\n"


def compile_and_run(workdir, name, source):
    c_path = os.path.join(workdir, name + ".c")
    exe = os.path.join(workdir, name)
    with open(c_path, "w") as f:
        f.write(source)
    run(["gcc", "-std=gnu11", "-O0", "-Wall", "-Werror", "-o", exe, c_path])
    out = subprocess.run([exe], check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    masks, values = {}, {}
    for line in out.splitlines():
        a, macro, v = line.split("\t")
        if a == "mask":
            masks[macro] = int(v)
        else:
            values.setdefault(int(a), {})[macro] = int(v)
    return masks, values


# ---------------------------------------------------------------------------------------------
# Macro metadata
# ---------------------------------------------------------------------------------------------

def bits_of(mask):
    return [b for b in range(64) if mask >> b & 1]


def vtd_kind(name, values, vectors):
    """'bool' when the macro reads exactly one bit (value 0 on zero, non-zero for one walking bit)."""
    index = {n: i for i, (n, _c, _e) in enumerate(vectors)}
    reg = 1 if name.startswith("ecap_") else 0
    zero = values[index["zero"]][name]
    deps = []
    for b in range(64):
        if values[index["bit%d" % b]][name] != zero:
            deps.append(b)
    kind = "bool" if zero == 0 and len(deps) == 1 else "int"
    return kind, deps, ("ecap" if reg else "cap")


def macro_entry(d, register, key, kind, bits, header, extra=None):
    e = {
        "name": d["name"],
        "register": register,
        "key": key,
        "kind": kind,
        "bits": bits,
        "header": header,
        "line": d["line"],
        "definition": d["text"],
    }
    if extra:
        e.update(extra)
    return e


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def build(tree, workdir, source_info):
    results = {}
    common = {
        "generator": "tests/golden/gen_golden.py",
        "kernel_version": kernel_version(tree),
        "source": source_info,
        "seed": SEED,
    }

    # ---------------- Intel VT-d ----------------
    hdr = HEADERS["vtd"]
    defs = read_defines(os.path.join(tree, hdr), r"^e?cap_\w+$")
    defs = [d for d in defs if d["params"] is not None]
    gen = generic_vectors(64)
    vectors = [(n, v, v) for n, v in gen] + [(r["name"], r["cap"], r["ecap"]) for r in REAL_VTD]
    _masks, values = compile_and_run(workdir, "vtd", vtd_program(defs, vectors))
    macros = []
    for d in defs:
        kind, deps, reg = vtd_kind(d["name"], values, vectors)
        key = reg + "." + d["name"][len(reg) + 1:]
        macros.append(macro_entry(d, reg, key, kind, deps, hdr))
    results["vtd"] = dict(common, header=hdr, header_sha256=sha256(os.path.join(tree, hdr)),
                          macros=macros, vectors=[])
    real = {r["name"]: r for r in REAL_VTD}
    for i, (n, c, e) in enumerate(vectors):
        v = {"name": n, "cap": "0x%x" % c, "ecap": "0x%x" % e, "values": values[i]}
        if n in real:
            v["real"] = {k: real[n][k] for k in ("source", "expected")}
        results["vtd"]["vectors"].append(v)

    # ---------------- AMD-Vi ----------------
    hdr = HEADERS["amd"]
    defs = read_defines(os.path.join(tree, hdr), r"^FEATURE_\w+$")
    gen = generic_vectors(64)
    vectors = [(n, v, v) for n, v in gen] + [(r["name"], r["efr"], r["efr2"]) for r in REAL_AMD]
    masks, values = compile_and_run(workdir, "amd", amd_program(defs, vectors))
    macros = []
    for d in defs:
        reg = amd_register(d)
        key = reg + "." + d["name"][len("FEATURE_"):].lower()
        if d["params"] is None:
            mask = masks[d["name"]]
            kind = "bool" if bin(mask).count("1") == 1 else "int"
            macros.append(macro_entry(d, reg, key, kind, bits_of(mask), hdr,
                                      {"mask": "0x%x" % mask, "evaluated_as": "FIELD_GET(mask, %s)" % reg}))
        else:
            macros.append(macro_entry(d, reg, key, "bool", [], hdr,
                                      {"evaluated_as": "%s(%s)" % (d["name"], reg)}))
    results["amd"] = dict(common, header=hdr, header_sha256=sha256(os.path.join(tree, hdr)),
                          macros=macros, vectors=[])
    real = {r["name"]: r for r in REAL_AMD}
    for i, (n, a, b) in enumerate(vectors):
        v = {"name": n, "efr": "0x%x" % a, "efr2": "0x%x" % b, "values": values[i]}
        if n in real:
            v["real"] = {k: real[n][k] for k in ("source", "printed", "printed_by") if k in real[n]}
        results["amd"]["vectors"].append(v)

    # ---------------- ARM SMMUv3 ----------------
    hdr = HEADERS["smmuv3"]
    defs = read_defines(os.path.join(tree, hdr), r"^(IDR\d|IIDR)_\w+$")
    fields = [d for d in defs if d["params"] is None and classify_mask(d["body"])]
    consts = [d for d in defs if d["params"] is None and not classify_mask(d["body"])]
    if any(d["params"] is not None for d in defs):
        raise SystemExit("function-like IDR macro found; extend gen_golden.py")
    gen = generic_vectors(32)
    vectors = [(n, [v] * 6, v, v) for n, v in gen]
    vectors += [(r["name"], r["idr"], r["iidr"], r["aidr"]) for r in REAL_SMMUV3]
    masks, values = compile_and_run(workdir, "smmuv3", smmu_program(fields, consts, vectors))
    macros = []
    field_names = sorted((d["name"] for d in fields), key=len, reverse=True)
    for d in fields:
        reg = smmu_register(d["name"])
        key = reg + "." + d["name"].split("_", 1)[1].lower()
        mask = masks[d["name"]]
        kind = "bool" if bin(mask).count("1") == 1 else "int"
        macros.append(macro_entry(d, reg, key, kind, bits_of(mask), hdr,
                                  {"mask": "0x%x" % mask, "evaluated_as": "FIELD_GET(mask, %s)" % reg}))
    constants = []
    for d in consts:
        owner = next((f for f in field_names if d["name"].startswith(f + "_")), None)
        if owner is None:
            raise SystemExit("constant %s belongs to no field; extend gen_golden.py" % d["name"])
        reg = smmu_register(owner)
        constants.append({
            "name": d["name"], "field": owner,
            "key": reg + "." + owner.split("_", 1)[1].lower(),
            "value_name": d["name"][len(owner) + 1:].lower(),
            "value": masks[d["name"]], "line": d["line"], "definition": d["text"],
        })
    results["smmuv3"] = dict(common, header=hdr, header_sha256=sha256(os.path.join(tree, hdr)),
                             macros=macros, constants=constants, vectors=[],
                             vector_layout="generic vectors put the same 32-bit value in IDR0-5, IIDR and AIDR")
    real = {r["name"]: r for r in REAL_SMMUV3}
    for i, (n, idr, iidr, aidr) in enumerate(vectors):
        v = {"name": n, "idr": ["0x%x" % x for x in idr], "iidr": "0x%x" % iidr, "aidr": "0x%x" % aidr,
             "values": values[i]}
        if n in real:
            v["real"] = {"source": real[n]["source"]}
        results["smmuv3"]["vectors"].append(v)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--deb", help="linux-source .deb (default: newest %s)" % DEB_GLOB)
    ap.add_argument("--src", help="an unpacked kernel tree to read instead of the .deb")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="gen_golden.")
    try:
        if args.src:
            tree = os.path.abspath(args.src)
            source_info = {"tree": os.path.basename(tree)}
        else:
            deb = args.deb or os.environ.get("IOMMU_HOST_LINUX_SOURCE_DEB")
            if not deb:
                debs = sorted(glob.glob(DEB_GLOB))
                if not debs:
                    raise SystemExit("no %s; pass --deb or --src" % DEB_GLOB)
                deb = debs[-1]
            tree, deb_version, tarball = extract_tree(deb, workdir)
            source_info = {"package": "linux-source-7.3", "deb": os.path.basename(deb),
                           "deb_version": deb_version, "tarball": tarball}
        results = build(tree, workdir, source_info)
        os.makedirs(args.out, exist_ok=True)
        for vendor, data in results.items():
            path = os.path.join(args.out, vendor + ".json")
            with open(path, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.write("\n")
            log("wrote %s (%d macros, %d vectors)" % (path, len(data["macros"]), len(data["vectors"])))
        names = {vendor: [m["name"] for m in data["macros"]] for vendor, data in results.items()}
        names["smmuv3_constants"] = [c["name"] for c in results["smmuv3"]["constants"]]
        names["kernel_version"] = results["vtd"]["kernel_version"]
        with open(os.path.join(args.out, "macro_names.json"), "w") as f:
            json.dump(names, f, indent=1, sort_keys=True)
            f.write("\n")
    finally:
        if args.keep:
            log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

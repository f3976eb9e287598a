#!/usr/bin/env python3
"""MQTT 3.1.1 and 5.0 conformance bookkeeping: which normative statements
that bind a server (S) or both sides (B) are covered by a test, and which
do not apply to cairn.

Tests declare what they assert with a tag directly above them:
  tests/*.c               /* covers: MQTT-3.1.0-1 MQTT-3.1.0-2 */  above START_TEST(name)
  tests/integration/*.py  # covers: MQTT-3.1.0-1                    above def test_name(

  conformance.py --write   regenerate tests/CONFORMANCE.md and
                           tests/CONFORMANCE-5.0.md
  conformance.py [--check] fail on uncovered ids, unknown ids in tags, or a
                           stale table; an id covered by a test
                           passes, one that does not apply to cairn (and
                           no test covers) is skipped with its reason; last
                           line "conformance: N passed, N failed, N skipped"

The id list comes from ../shared/spec/mqtt-3.1.1-normative.md (relative to
the source root) when it exists, else from the table frozen in
tests/CONFORMANCE.md.

MQTT 5.0 statements are tagged MQTT5-x.y.z-n (5.0 reuses 3.1.1 numbers with
other meanings, so the prefix names the version; a statement without a
number is tagged with its section, MQTT5-x.y.z.w, and not checked). Their
list comes from ../shared/spec/mqtt-5.0-normative.md, else from
tests/CONFORMANCE-5.0.md. A tag naming a 5.0 id that is not a server/both
statement fails. cairn serves protocol level 5, so 5.0 ids are checked as
3.1.1 ids are: each is covered or listed in NOT_APPLICABLE_5.
"""

import argparse
import glob
import os
import re
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
SPEC = os.path.join(ROOT, "..", "shared", "spec", "mqtt-3.1.1-normative.md")
DOC = os.path.join(TESTS, "CONFORMANCE.md")
SPEC5 = os.path.join(ROOT, "..", "shared", "spec", "mqtt-5.0-normative.md")
DOC5 = os.path.join(TESTS, "CONFORMANCE-5.0.md")

# conn.c accepts a CONNECT of protocol level 5: every 5.0 id must be
# covered or listed here.
NOT_APPLICABLE_5 = {
    "3.1.3-8": "cairn refuses no well-formed 5.0 client id (an empty one is assigned an id), "
               "so it never answers CONNACK 0x85",
    "3.2.2-9": "cairn supports QoS 1 and 2, so it never limits Maximum QoS",
    "3.2.2-10": "applies only to a server that limits Maximum QoS; cairn supports QoS 2",
    "3.2.2-12": "cairn supports every Will QoS, so none is beyond its capability",
    "3.2.2-13": "cairn supports retained messages (Retain Available 1)",
    "3.15.2-2": "cairn's AUTH carries only the Authentication Method and Data, never a Reason "
                "String, so there is none to leave out",
    "3.15.2-3": "cairn's AUTH carries only the Authentication Method and Data, never a User "
                "Property, so there is none to leave out",
    "6.0.0-1": "no WebSocket listener: cairn serves MQTT over plain TCP (and TLS) only",
    "6.0.0-2": "no WebSocket listener",
    "6.0.0-4": "no WebSocket listener, so no subprotocol to select",
}

# Ids that bind a server in general but not this broker, and why.
NOT_APPLICABLE = {
    "6.0.0-1": "no WebSocket listener: cairn serves MQTT over plain TCP only",
    "6.0.0-2": "no WebSocket listener",
    "6.0.0-4": "no WebSocket listener, so no subprotocol to select",
    "7.0.0-1": "no bridge: cairn never connects out to another server",
    "3.8.3-2": "cairn supports wildcard subscriptions, so it never has to reject them",
}

ID_RE = re.compile(r"MQTT-(\d+\.\d+\.\d+-\d+)")
ID5_RE = re.compile(r"MQTT5-(\d+\.\d+\.\d+-\d+)")
ROW_RE = re.compile(r"^\|\s*(\d+\.\d+\.\d+-\d+)\s*\|\s*([SBC])\s*\|\s*(.*?)\s*\|")
DOC_ROW_RE = re.compile(r"^\|\s*(\d+\.\d+\.\d+-\d+)\s*\|\s*([SB])\s*\|\s*((?:[^|\\]|\\.)*?)\s*\|")
C_TAG_RE = re.compile(r"^\s*/\*\s*covers:(.*?)\*/\s*$")
C_TEST_RE = re.compile(r"^\s*START_TEST\s*\(\s*(\w+)\s*\)")
PY_TAG_RE = re.compile(r"^\s*#\s*covers:(.*)$")
PY_TEST_RE = re.compile(r"^\s*def\s+(test_\w+)\s*\(")


def id_key(i):
    a, n = i.split("-")
    return tuple(int(x) for x in a.split(".")) + (int(n),)


def load_ids(spec=SPEC, doc=DOC):
    """Returns ({id: (who, paraphrase)}, source) for S and B ids."""
    ids = {}
    if os.path.exists(spec):
        with open(spec, encoding="utf-8") as f:
            for line in f:
                m = ROW_RE.match(line)
                if m and m.group(2) in "SB":
                    ids[m.group(1)] = (m.group(2), m.group(3).strip())
        return ids, "spec"
    if os.path.exists(doc):
        with open(doc, encoding="utf-8") as f:
            for line in f:
                m = DOC_ROW_RE.match(line)
                if m:
                    ids[m.group(1)] = (m.group(2), m.group(3).replace("\\|", "|").strip())
        return ids, "frozen"
    sys.exit("conformance: neither %s nor %s exists" % (spec, doc))


def scan_tags():
    """Returns ({id: set(test names)}, {5.0 id: set(test names)}, [problems])."""
    cov, cov5, problems = {}, {}, []

    def scan(path, tag_re, test_re, label, skip_re=None):
        pending = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = tag_re.match(line)
                if m:
                    pending.append((lineno, ID_RE.findall(m.group(1)), m.group(1)))
                    continue
                m = test_re.match(line)
                if m:
                    for _, ids, text in pending:
                        for i in ids:
                            cov.setdefault(i, set()).add("%s/%s" % (label, m.group(1)))
                        for i in ID5_RE.findall(text):
                            cov5.setdefault(i, set()).add("%s/%s" % (label, m.group(1)))
                    pending = []
                    continue
                if skip_re and skip_re.match(line):
                    continue
                for ln, ids, text in pending:
                    if ids or ID5_RE.search(text):
                        problems.append("%s:%d: covers tag not directly above a test" %
                                        (os.path.relpath(path, ROOT), ln))
                pending = []

    for path in sorted(glob.glob(os.path.join(TESTS, "*.c"))):
        label = os.path.splitext(os.path.basename(path))[0]
        scan(path, C_TAG_RE, C_TEST_RE, label)
    for path in sorted(glob.glob(os.path.join(TESTS, "integration", "*.py"))):
        scan(path, PY_TAG_RE, PY_TEST_RE, "integration", skip_re=re.compile(r"^\s*@"))
    return cov, cov5, problems


def short(text, n=70):
    text = text.replace("|", "\\|")
    return text if len(text) <= n else text[:n - 3].rstrip() + "..."


# One entry per protocol version: tag prefix, id source, table, what does
# not apply, and the table's introduction.
VERSIONS = (
    ("MQTT-", SPEC, DOC, NOT_APPLICABLE, [
        "# MQTT 3.1.1 conformance",
        "",
        "Generated by `tests/conformance.py --write`; do not edit by hand. Every",
        "normative statement that binds a server (S) or both sides (B), with the",
        "tests that assert it. Tag a test with `/* covers: MQTT-x.y.z-n */` above",
        "`START_TEST` (tests/*.c) or `# covers: MQTT-x.y.z-n` above `def test_`",
        "(tests/integration/*.py). This table also freezes the id list for",
        "checkouts without the spec file.",
    ]),
    ("MQTT5-", SPEC5, DOC5, NOT_APPLICABLE_5, [
        "# MQTT 5.0 conformance",
        "",
        "Generated by `tests/conformance.py --write`; do not edit by hand. Every",
        "MQTT 5.0 normative statement that binds a server (S) or both sides (B),",
        "with the tests that assert it. Tag a test with `MQTT5-x.y.z-n` (never a",
        "3.1.1 number: 5.0 reuses them with other meanings). This table also",
        "freezes the id list for checkouts without the spec file.",
    ]),
)


def render(intro, not_applicable, ids, cov):
    applicable = [i for i in ids if i not in not_applicable]
    covered = [i for i in applicable if cov.get(i)]
    out = intro + [
        "",
        "%d ids: %d covered, %d not applicable, %d not yet covered." %
        (len(ids), len(covered), len(ids) - len(applicable), len(applicable) - len(covered)),
        "",
        "| id | who | paraphrase | covering tests |",
        "|---|---|---|---|",
    ]
    for i in sorted(ids, key=id_key):
        who, para = ids[i]
        if i in not_applicable:
            tests = "n/a"
        else:
            tests = ", ".join(sorted(cov.get(i, ()))) or "**none**"
        out.append("| %s | %s | %s | %s |" % (i, who, short(para), tests))
    out += ["", "## Not applicable", "", "| id | reason |", "|---|---|"]
    for i in sorted(not_applicable, key=id_key):
        if i in ids:
            out.append("| %s | %s |" % (i, not_applicable[i]))
    return "\n".join(out) + "\n"


def check(prefix, doc, not_applicable, ids, cov, text):
    """Prints a line per failed or skipped id; returns (passed, failed, skipped)."""
    passed = failed = skipped = 0
    what = "a 5.0 server/both statement" if prefix == "MQTT5-" else "a server/both statement"
    for i in sorted(set(cov) - set(ids), key=id_key):
        print("FAIL tag names an id that is not %s: %s%s (%s)" %
              (what, prefix, i, ", ".join(sorted(cov[i]))))
        failed += 1
    for i in sorted(ids, key=id_key):
        if cov.get(i):
            passed += 1
        elif i in not_applicable:
            print("SKIP %s%s: %s" % (prefix, i, not_applicable[i]))
            skipped += 1
        else:
            print("FAIL uncovered: %s%s [%s] %s" % (prefix, i, ids[i][0], short(ids[i][1])))
            failed += 1
    try:
        with open(doc, encoding="utf-8") as f:
            current = f.read()
    except OSError:
        current = None
    if current != text:
        print("FAIL %s is stale: run tests/conformance.py --write" % os.path.relpath(doc, ROOT))
        failed += 1
    return passed, failed, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true")
    g.add_argument("--check", action="store_true")
    args = ap.parse_args()

    cov, cov5, problems = scan_tags()
    covs = {"MQTT-": cov, "MQTT5-": cov5}
    passed = skipped = 0
    failed = len(problems)
    for p in problems:
        print("FAIL " + p)
    for prefix, spec, doc, not_applicable, intro in VERSIONS:
        ids, source = load_ids(spec, doc)
        text = render(intro, not_applicable, ids, covs[prefix])
        if args.write:
            with open(doc, "w", encoding="utf-8") as f:
                f.write(text)
            print("wrote %s (%d ids, source: %s)" % (os.path.relpath(doc, ROOT), len(ids), source))
            continue
        p, f, s = check(prefix, doc, not_applicable, ids, covs[prefix], text)
        passed, failed, skipped = passed + p, failed + f, skipped + s
    if args.write:
        return 0
    print("conformance: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check the conformance vectors.

For every conformance/vectors/*.json file this script:

* validates the file against schema/vector.schema.json (which refers to
  schema/ruleset.schema.json) with the `jsonschema` package;
* runs the structural checks of SCHEMA.md's "Validation" section that a
  JSON Schema cannot express (variation indices, weight sums, clause values,
  duplicate rule and experiment keys, dangling references, prerequisite and
  segment cycles, experiment ranges) and compares what it finds with the
  file's `expect_problems` (a file without it must have no problem at all);
* checks that every case is consistent with its flag (rule ids and indices,
  served values, off and fallthrough variations, wrong types, malformed
  flags, ...);
* recomputes every `notes` hash and bucket with tools/murmur3.py, and checks
  that the expected variation and `in_experiment` follow from them.

It does not evaluate flags: expectations are written by hand from SCHEMA.md.

Usage: check_vectors.py [VECTOR_FILE ...]   (default: every vectors/*.json)
Needs: pip install jsonschema  (4.18 or later)
Exit status: 0 when every file passes, 1 otherwise.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import sys
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from murmur3 import bucket_of_hash, murmur3_x86_32, self_check  # noqa: E402

SCHEMA_DIR = os.path.join(ROOT, "schema")
VECTOR_DIR = os.path.join(ROOT, "vectors")

KEY_RE = re.compile(r"^[A-Za-z0-9._-]{1,256}$")
BUCKET_SCALE = 100_000


# --------------------------------------------------------------------------- helpers


def same_json(a, b) -> bool:
    """JSON equality: numbers compare numerically, but a bool is never a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_date(v):
    """A date per SCHEMA.md: an RFC 3339 string with a time zone, or epoch milliseconds.

    Returns a comparable (seconds, fraction-string) tuple, or None.
    """
    if is_number(v):
        if not math.isfinite(v):
            return None
        return ("ms", v)
    if not isinstance(v, str):
        return None
    m = _RFC3339.match(v)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        base = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=timezone.utc)
    except ValueError:
        return None
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        oh, om = int(tz[1:3]), int(tz[4:6])
        if oh > 23 or om > 59:
            return None
        base -= sign * timedelta(hours=oh, minutes=om)
    return ("rfc3339", base, frac or "")


_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"^({_NUM})(?:\.({_NUM}))?(?:\.({_NUM}))?(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?(?:\+({_BUILD_ID}(?:\.{_BUILD_ID})*))?$"
)


def parse_semver(v):
    """A version per SCHEMA.md ('1' and '1.2' padded, no leading v); None if it does not parse."""
    if not isinstance(v, str):
        return None
    m = _SEMVER.match(v)
    if not m:
        return None
    major, minor, patch, pre, _build = m.groups()
    if pre is not None and (minor is None or patch is None):
        return None  # "1.2-beta": not used by the vectors, treated as not a version here
    return (int(major), int(minor or 0), int(patch or 0), tuple(pre.split(".")) if pre else ())


# Constructs of Python's `re` that Rust's `regex` crate does not have.
_NON_RUST_REGEX = re.compile(r"\(\?(=|!|<=|<!|P=|\()|\\[1-9]")


def regex_ok(v) -> bool:
    if not isinstance(v, str):
        return False
    if _NON_RUST_REGEX.search(v):
        return False
    try:
        re.compile(v)
    except re.error:
        return False
    return True


def clause_value_problem(op: str, v, segment_keys) -> bool:
    """True when clause value `v` is one the operator cannot take."""
    if v is None:
        return True
    if op == "in":
        return not isinstance(v, (str, bool, int, float))
    if op in ("starts_with", "ends_with", "contains"):
        return not isinstance(v, str)
    if op == "matches":
        return not regex_ok(v)
    if op in ("lt", "lte", "gt", "gte"):
        return not is_number(v)
    if op in ("before", "after"):
        return parse_date(v) is None
    if op in ("semver_eq", "semver_lt", "semver_gt"):
        return parse_semver(v) is None
    if op == "segment_match":
        return not isinstance(v, str) or v not in segment_keys
    return True


def sccs(nodes, edges):
    """Tarjan's strongly connected components. edges: node -> iterable of nodes."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            out.append(comp)

    for n in nodes:
        if n not in index:
            visit(n)
    return out


def cyclic_members(nodes, edges):
    """Map node -> its SCC for every node that lies on a cycle (including self-loops)."""
    res = {}
    for comp in sccs(nodes, edges):
        if len(comp) > 1 or any(n in edges.get(n, ()) for n in comp):
            for n in comp:
                res[n] = comp
    return res


# --------------------------------------------------------------------------- structural validation


def serves_of(flag):
    """(path, serve) for every serve of a flag: rules in order, then the fallthrough."""
    out = []
    for i, r in enumerate(flag.get("rules", [])):
        out.append((f"rules[{i}].serve", r["serve"]))
    out.append(("fallthrough", flag["fallthrough"]))
    return out


def clauses_of(rules):
    for i, r in enumerate(rules):
        for j, c in enumerate(r.get("clauses", [])):
            yield f"rules[{i}].clauses[{j}]", c


def validate_ruleset(flags, segments):
    """Return (problems, malformed_flag_keys).

    problems: list of (resource, key, path) in the conventions of expect_problems.
    """
    problems = []

    def add(resource, key, path):
        problems.append((resource, key, path))

    flag_by_key, seg_by_key = {}, {}
    for f in flags:
        if f["key"] in flag_by_key:
            add("flag", f["key"], "key")
        flag_by_key.setdefault(f["key"], f)
    for s in segments:
        if s["key"] in seg_by_key:
            add("segment", s["key"], "key")
        seg_by_key.setdefault(s["key"], s)

    def check_clauses(resource, key, rules):
        for path, c in clauses_of(rules):
            for k, v in enumerate(c["values"]):
                if clause_value_problem(c["op"], v, seg_by_key):
                    add(resource, key, f"{path}.values[{k}]")

    def check_rule_ids(resource, key, rules):
        seen = set()
        for i, r in enumerate(rules):
            if r["id"] in seen:
                add(resource, key, f"rules[{i}].id")
            seen.add(r["id"])

    # Segments: clause values, rule ids, cycles.
    seg_edges = {}
    for s in segments:
        rules = s.get("rules", [])
        check_clauses("segment", s["key"], rules)
        check_rule_ids("segment", s["key"], rules)
        seg_edges[s["key"]] = [
            v for _, c in clauses_of(rules) if c["op"] == "segment_match" for v in c["values"] if v in seg_by_key
        ]
    seg_cycle = cyclic_members(list(seg_by_key), seg_edges)
    for s in segments:
        if s["key"] in seg_cycle:
            comp = seg_cycle[s["key"]]
            for path, c in clauses_of(s.get("rules", [])):
                if c["op"] == "segment_match":
                    for k, v in enumerate(c["values"]):
                        if v in comp:
                            add("segment", s["key"], f"{path}.values[{k}]")

    # Segments from which a cycle can be reached.
    reaches_cycle = {}

    def seg_reaches_cycle(k, trail=()):
        if k in reaches_cycle:
            return reaches_cycle[k]
        if k in seg_cycle:
            reaches_cycle[k] = True
            return True
        if k in trail:
            return False
        r = any(seg_reaches_cycle(n, trail + (k,)) for n in seg_edges.get(k, ()))
        reaches_cycle[k] = r
        return r

    # Flags.
    experiments_by_layer = {}
    experiment_keys = set()
    prereq_edges = {}
    segment_cycle_flags = set()
    for f in flags:
        key = f["key"]
        n = len(f["variations"])

        def idx(path, v):
            if v is not None and not (0 <= v < n):
                add("flag", key, path)

        idx("off_variation", f.get("off_variation"))
        for i, t in enumerate(f.get("targets", [])):
            idx(f"targets[{i}].variation", t["variation"])
        rules = f.get("rules", [])
        check_rule_ids("flag", key, rules)
        check_clauses("flag", key, rules)
        for path, c in clauses_of(rules):
            if c["op"] == "segment_match" and any(
                isinstance(v, str) and v in seg_by_key and seg_reaches_cycle(v) for v in c["values"]
            ):
                segment_cycle_flags.add(key)
        for path, serve in serves_of(f):
            if "variation" in serve:
                idx(f"{path}.variation", serve["variation"])
            if "rollout" in serve:
                ro = serve["rollout"]
                for j, wv in enumerate(ro["variations"]):
                    idx(f"{path}.rollout.variations[{j}].variation", wv["variation"])
                if sum(wv["weight"] for wv in ro["variations"]) != BUCKET_SCALE or any(
                    wv["weight"] < 0 for wv in ro["variations"]
                ):
                    add("flag", key, f"{path}.rollout.variations")
                if ro.get("algorithm", "murmur3_v1") != "murmur3_v1":
                    add("flag", key, f"{path}.rollout.algorithm")
            if "experiment" in serve:
                ex = serve["experiment"]
                if "rollout" not in serve:
                    add("flag", key, f"{path}.experiment")
                    continue
                if ex["key"] in experiment_keys:
                    add("flag", key, f"{path}.experiment.key")
                    continue
                experiment_keys.add(ex["key"])
                layer = ex.get("layer", ex["key"])
                lo = ex.get("layer_offset", 0)
                hi = lo + ex.get("traffic_allocation", BUCKET_SCALE)
                if hi > BUCKET_SCALE:
                    add("flag", key, f"{path}.experiment")
                    continue
                taken = experiments_by_layer.setdefault(layer, [])
                if any(lo < h and l < hi for (l, h) in taken if h > l) and hi > lo:
                    add("flag", key, f"{path}.experiment")
                    continue
                taken.append((lo, hi))
        prereq_edges[key] = []
        for i, p in enumerate(f.get("prerequisites", [])):
            target = flag_by_key.get(p["key"])
            if target is None:
                add("flag", key, f"prerequisites[{i}].key")
                continue
            prereq_edges[key].append(p["key"])
            if not (0 <= p["variation"] < len(target["variations"])):
                add("flag", key, f"prerequisites[{i}].variation")

    flag_cycle = cyclic_members(list(flag_by_key), prereq_edges)
    for f in flags:
        if f["key"] in flag_cycle:
            comp = flag_cycle[f["key"]]
            for i, p in enumerate(f.get("prerequisites", [])):
                if p["key"] in comp:
                    add("flag", f["key"], f"prerequisites[{i}].key")

    malformed = {k for (res, k, _) in problems if res == "flag"} | segment_cycle_flags
    return problems, malformed


# --------------------------------------------------------------------------- case checks


def requested_type(case):
    if "type" in case:
        return case["type"]
    d = case["default"]
    if isinstance(d, bool):
        return "bool"
    if isinstance(d, str):
        return "string"
    if is_number(d):
        return "number"
    return "json"


def check_notes(case, flag, errors):
    notes = case.get("notes")
    if not notes:
        return
    name = case["name"]
    for prefix in ("", "layer_"):
        hi = notes.get(prefix + "hash_input")
        if hi is None:
            continue
        h = murmur3_x86_32(hi)
        if notes.get(prefix + "hash") != h:
            errors.append(f"case {name!r}: notes.{prefix}hash is {notes.get(prefix + 'hash')}, murmur3({hi!r}) is {h}")
        b = bucket_of_hash(h)
        if notes.get(prefix + "bucket") != b:
            errors.append(f"case {name!r}: notes.{prefix}bucket is {notes.get(prefix + 'bucket')}, recomputed {b}")
    if flag is None or "hash_input" not in notes:
        return

    # The expected variation must follow from the bucket (and the layer bucket).
    exp = case["expect"]
    reason = exp["reason"]
    if reason["kind"] == "RULE_MATCH":
        serve = flag["rules"][reason["rule_index"]]["serve"]
    elif reason["kind"] == "FALLTHROUGH":
        serve = flag["fallthrough"]
    else:
        errors.append(f"case {name!r}: notes with a hash on a {reason['kind']} result")
        return
    if "rollout" not in serve:
        errors.append(f"case {name!r}: notes with a hash but the serve has no rollout")
        return
    salt = flag.get("salt", flag["key"])
    if not notes["hash_input"].startswith(salt + ":"):
        errors.append(f"case {name!r}: notes.hash_input does not start with the flag's salt {salt!r}")
    value = notes["hash_input"][len(salt) + 1 :]
    ro = serve["rollout"]
    total, picked = 0, None
    for wv in ro["variations"]:
        total += wv["weight"]
        if total > notes["bucket"]:
            picked = wv["variation"]
            break
    ex = serve.get("experiment")
    if ex is not None:
        layer = ex.get("layer", ex["key"])
        want = f"layer/{layer}:{value}"
        if notes.get("layer_hash_input") != want:
            errors.append(f"case {name!r}: notes.layer_hash_input should be {want!r}")
            return
        lo = ex.get("layer_offset", 0)
        hi = lo + ex.get("traffic_allocation", BUCKET_SCALE)
        inside = lo <= notes["layer_bucket"] < hi
        if exp["in_experiment"] != inside:
            errors.append(f"case {name!r}: layer bucket {notes['layer_bucket']} gives in_experiment {inside}")
        if not inside:
            picked = ro["variations"][0]["variation"]
    elif exp["in_experiment"]:
        errors.append(f"case {name!r}: in_experiment true without an experiment")
    if exp["variation"] != picked:
        errors.append(f"case {name!r}: bucket {notes['bucket']} selects variation {picked}, expected says {exp['variation']}")


def check_case(case, flag_by_key, malformed, errors):
    name = case["name"]
    exp = case["expect"]
    reason = exp["reason"]
    kind = reason["kind"]
    flag = flag_by_key.get(case["flag"])

    def err(msg):
        errors.append(f"case {name!r}: {msg}")

    if kind == "ERROR" and reason["error_kind"] == "FLAG_NOT_FOUND":
        if flag is not None:
            err("FLAG_NOT_FOUND but the flag exists")
    elif flag is None:
        err(f"unknown flag {case['flag']!r}")
        return

    if exp["variation"] is None:
        if not same_json(exp["value"], case["default"]):
            err("variation is null but value is not the default")
        if exp["in_experiment"]:
            err("in_experiment with the default value")
    else:
        if flag is None or exp["variation"] >= len(flag["variations"]):
            err("variation index out of range")
            return
        if not same_json(exp["value"], flag["variations"][exp["variation"]]):
            err("value is not the flag's variation at the expected index")
    if flag is None:
        return

    want_type = requested_type(case)
    type_ok = want_type == "json" or want_type == flag["kind"]
    is_malformed = flag["key"] in malformed

    if kind == "ERROR":
        ek = reason["error_kind"]
        if exp["variation"] is not None:
            err("an ERROR result must return the default")
        if ek == "MALFORMED_FLAG" and not is_malformed:
            err("MALFORMED_FLAG expected but the flag has no problem")
        if ek == "WRONG_TYPE" and (type_ok or is_malformed):
            err("WRONG_TYPE expected but the type is accepted (or the flag is malformed)")
        return
    if is_malformed:
        err(f"the flag is malformed, so the result must be ERROR / MALFORMED_FLAG, not {kind}")
        return
    if not type_ok:
        err(f"{want_type} requested from a {flag['kind']} flag: the result must be WRONG_TYPE")
        return

    def serves_off_variation():
        # OFF and PREREQUISITE_FAILED: the flag's off_variation, outside any experiment.
        if exp["variation"] != flag.get("off_variation"):
            err(f"{kind} must serve off_variation")
        if exp["in_experiment"]:
            err(f"in_experiment on {kind}")

    on = flag.get("on", False)
    if kind == "OFF":
        if on:
            err("OFF but the flag is on")
        serves_off_variation()
        return
    if not on:
        err(f"{kind} on an off flag")
        return
    if kind == "PREREQUISITE_FAILED":
        keys = [p["key"] for p in flag.get("prerequisites", [])]
        if reason["prerequisite_key"] not in keys:
            err("prerequisite_key is not one of the flag's prerequisites")
        serves_off_variation()
        return
    if kind == "TARGET_MATCH":
        if exp["variation"] not in [t["variation"] for t in flag.get("targets", [])]:
            err("TARGET_MATCH with a variation no target serves")
        if exp["in_experiment"]:
            err("in_experiment on TARGET_MATCH")
        return
    if kind == "RULE_MATCH":
        rules = flag.get("rules", [])
        i = reason["rule_index"]
        if i >= len(rules):
            err("rule_index out of range")
            return
        if rules[i]["id"] != reason["rule_id"]:
            err(f"rule {i} has id {rules[i]['id']!r}, not {reason['rule_id']!r}")
        serve = rules[i]["serve"]
    else:  # FALLTHROUGH
        serve = flag["fallthrough"]
    if "variation" in serve:
        if exp["variation"] != serve["variation"]:
            err(f"{kind} serves variation {serve['variation']}, not {exp['variation']}")
        if exp["in_experiment"]:
            err("in_experiment on a plain variation serve")
    else:
        ro_vars = [wv["variation"] for wv in serve["rollout"]["variations"]]
        if exp["variation"] not in ro_vars:
            err("variation is not one of the rollout's")
        if exp["in_experiment"] and "experiment" not in serve:
            err("in_experiment without an experiment")


# --------------------------------------------------------------------------- main


def load_validator():
    try:
        import jsonschema
        from referencing import Registry, Resource
    except ImportError:
        sys.exit("check_vectors: needs the jsonschema package (4.18 or later): pip install jsonschema")
    schemas = {}
    for name in ("ruleset.schema.json", "vector.schema.json"):
        with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as fh:
            schemas[name] = json.load(fh)
        jsonschema.Draft202012Validator.check_schema(schemas[name])
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values()
    )
    return (
        jsonschema.Draft202012Validator(schemas["vector.schema.json"], registry=registry),
        jsonschema.Draft202012Validator(schemas["ruleset.schema.json"], registry=registry),
    )


def check_file(path, validator, ruleset_validator):
    errors = []
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        return [f"not JSON: {e}"], 0
    if not text.endswith("\n"):
        errors.append("file does not end with a newline")

    schema_errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in schema_errors[:20]:
        loc = "/".join(str(p) for p in e.absolute_path)
        errors.append(f"schema: at /{loc}: {e.message[:300]}")
    if schema_errors:
        return errors, len(doc.get("cases", [])) if isinstance(doc, dict) else 0

    # The flags and segments also form a valid Ruleset.
    for e in ruleset_validator.iter_errors({"flags": doc["flags"], "segments": doc["segments"]}):
        errors.append(f"ruleset schema: {e.message[:300]}")

    problems, malformed = validate_ruleset(doc["flags"], doc["segments"])
    found = set(problems)
    expected = {(p["resource"], p["key"], p["path"]) for p in doc.get("expect_problems", [])}
    if len(expected) != len(doc.get("expect_problems", [])):
        errors.append("expect_problems lists a problem twice")
    for p in sorted(found - expected):
        errors.append(f"validation problem not listed in expect_problems: {p[0]} {p[1]!r} at {p[2]}")
    for p in sorted(expected - found):
        errors.append(f"expect_problems entry not found by the checks: {p[0]} {p[1]!r} at {p[2]}")

    flag_by_key = {}
    for f in doc["flags"]:
        flag_by_key.setdefault(f["key"], f)
    names = set()
    for case in doc["cases"]:
        if case["name"] in names:
            errors.append(f"duplicate case name {case['name']!r}")
        names.add(case["name"])
        check_case(case, flag_by_key, malformed, errors)
        check_notes(case, flag_by_key.get(case["flag"]), errors)

    # Every malformed flag is exercised by at least one case.
    used = {c["flag"] for c in doc["cases"]}
    for k in sorted(malformed - used):
        errors.append(f"malformed flag {k!r} has no case")
    return errors, len(doc["cases"])


def main(argv):
    failures = self_check()
    if failures:
        for f in failures:
            print("murmur3 self-check:", f)
        return 1
    validator, ruleset_validator = load_validator()
    files = argv or sorted(glob.glob(os.path.join(VECTOR_DIR, "*.json")))
    if not files:
        print("no vector files found")
        return 1
    total, passed, failed = 0, 0, 0
    for path in files:
        errors, n = check_file(path, validator, ruleset_validator)
        total += n
        name = os.path.basename(path)
        if errors:
            failed += 1
            print(f"FAIL {name} ({n} cases)")
            for e in errors:
                print(f"     {e}")
        else:
            passed += 1
            print(f"ok   {name}: {n} cases")
    print(f"{len(files)} files, {total} cases")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

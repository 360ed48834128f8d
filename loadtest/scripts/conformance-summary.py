"""Summarizes one run of the http-cache-tests client (conformance.sh): the
outcomes by test kind, then every test that did not pass.

    python3 conformance-summary.py TESTS_JSON RESULTS_JSON

TESTS_JSON lists the suites and their tests (id, name, kind, depends_on,
browser_only), as conformance.sh dumps them from the package; RESULTS_JSON
is the client's output: per test id, `true` (passed) or
[error name, message] ("Assertion", "Setup", or whatever the harness threw).

Each test is classified as the suite's results display does
(determineTestResult in lib/display.mjs of http-cache-tests 0.4.5): a test
whose dependency (depends_on) did not pass (pass or yes) is
"dependency_fail" whatever its own result; a "Setup" error is
"setup_fail" ("retry" when the server saw a request twice); otherwise a
required test (the kind when none is given) passes or fails, an optimal one
passes or is an "optional_fail", and a check is answered "yes" or "no".
The display never reaches its "harness_fail" (its test for it cannot be
true), so other errors count as failures here too; their error name is
shown with the message. Tests the client does not run without a browser
cache (browser_only) are "untested".
"""

import json
import sys

tests_file, results_file = sys.argv[1:3]
with open(tests_file) as f:
    suites = json.load(f)
with open(results_file) as f:
    results = json.load(f)

tests = {t["id"]: t for suite in suites for t in suite["tests"]}
outcomes = {}


def outcome(test_id):
    """The display's determineTestResult, with depends_on honoured."""
    if test_id in outcomes:
        return outcomes[test_id]
    test = tests[test_id]
    result = results.get(test_id)
    kind = test.get("kind") or "required"
    if result is None:
        value = "untested"
    elif any(outcome(dep) not in ("pass", "yes") for dep in test.get("depends_on") or []):
        value = "dependency_fail"
    elif isinstance(result, list) and result[0] == "Setup":
        value = "retry" if result[1] == "retry" else "setup_fail"
    elif kind == "required":
        value = "pass" if result is True else "fail"
    elif kind == "optimal":
        value = "pass" if result is True else "optional_fail"
    elif kind == "check":
        value = "yes" if result is True else "no"
    else:
        raise ValueError(f"test {test_id}: unknown kind {kind}")
    outcomes[test_id] = value
    return value


def message(test_id):
    result = results.get(test_id)
    if result is None:
        return "not run"
    if result is True:
        return "passed itself"
    return ": ".join(str(part) for part in result)


kinds = ("required", "optimal", "check")
# Columns: passed (pass, or yes for a check), failed (fail, optional_fail,
# or no for a check), then the outcomes that are neither.
columns = ("passed", "failed", "setup_fail", "retry", "dependency_fail", "untested")
column_of = {"pass": "passed", "yes": "passed", "fail": "failed",
             "optional_fail": "failed", "no": "failed"}
totals = {kind: dict.fromkeys(columns, 0) for kind in kinds}
for test_id, test in tests.items():
    value = outcome(test_id)
    totals[test.get("kind") or "required"][column_of.get(value, value)] += 1

unknown = sorted(set(results) - set(tests))
browser_only = sorted(i for i, t in tests.items() if t.get("browser_only") and i not in results)
ran = sum(1 for i in tests if i in results)
print(f"{ran} tests run of {len(tests)} ({len(browser_only)} browser-only not run)")
print()
width = max(len(c) for c in columns)
print(f"{'kind':<9}{'tests':>7}" + "".join(f"{c:>{width + 2}}" for c in columns))
for kind in kinds:
    row = totals[kind]
    print(f"{kind:<9}{sum(row.values()):>7}" + "".join(f"{row[c]:>{width + 2}}" for c in columns))
all_row = {c: sum(totals[k][c] for k in kinds) for c in columns}
print(f"{'all':<9}{sum(all_row.values()):>7}" + "".join(f"{all_row[c]:>{width + 2}}" for c in columns))
print("(a check's passed/failed is the suite's yes/no; an optimal test's failed is its optional_fail)")

print()
print("Not passed:")
listed = 0
for suite in suites:
    rows = []
    for test in suite["tests"]:
        test_id = test["id"]
        value = outcome(test_id)
        if value in ("pass", "yes") or test_id in browser_only:
            continue
        text = message(test_id)
        if value == "dependency_fail":
            failed = [d for d in test["depends_on"] if outcome(d) not in ("pass", "yes")]
            text = f"depends on {', '.join(f'{d} ({outcome(d)})' for d in failed)}; itself: {text}"
        rows.append(f"  {test_id}  [{test.get('kind') or 'required'}, {value}]\n"
                    f"      {test['name']}\n      {text}")
    if rows:
        print(f"- {suite['name']} ({suite['id']})")
        print("\n".join(rows))
        listed += len(rows)
if not listed:
    print("  (none)")
if browser_only:
    print()
    print("Browser-only, not run: " + ", ".join(browser_only))
if unknown:
    print()
    print("Results for tests not in the suite: " + ", ".join(unknown))

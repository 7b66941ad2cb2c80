"""Playbook references (`expect:`) judged on stored records: an absolute range, or at least
a fraction of the node's measured ceiling or datasheet peak (``pct_of_ceiling`` and
``pct_of_datasheet`` of the query records)."""

from __future__ import annotations

from typing import Any

PASS, FAIL, NO_CEILING, NO_PEAK = "pass", "fail", "no ceiling", "no datasheet peak"


def _rules(rule: dict[str, Any], r: dict[str, Any]) -> list[tuple[str, str]]:
    """(verdict, what was asked) for each bound of one expectation on one record."""
    value, unit = r["median"], r["unit"]
    out = []
    if rule.get("min") is not None:
        out.append((PASS if value >= rule["min"] else FAIL, f">= {rule['min']:g} {unit}"))
    if rule.get("max") is not None:
        out.append((PASS if value <= rule["max"] else FAIL, f"<= {rule['max']:g} {unit}"))
    for key, pct_key, missing, what in (
        ("of_ceiling", "pct_of_ceiling", NO_CEILING, "of the measured ceiling"),
        ("of_peak", "pct_of_datasheet", NO_PEAK, "of the datasheet peak"),
    ):
        if rule.get(key) is None:
            continue
        asked = f">= {100 * rule[key]:g}% {what}"
        pct = r.get(pct_key)
        if pct is None:
            out.append((missing, asked))
        else:
            out.append((PASS if pct >= 100 * rule[key] else FAIL, f"{asked} (is {pct:.0f}%)"))
    return out


def judge_expectations(
    records: list[dict[str, Any]], expectations: dict[str, dict[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """One result per (ok trial, expected metric, bound); ``expectations`` maps a benchmark's
    name to {metric: {min, max, of_ceiling, of_peak}}. Failures first."""
    out = []
    for r in records:
        rule = expectations.get(r["benchmark"], {}).get(r["metric"] or "")
        if rule is None or r["median"] is None:
            continue
        for verdict, asked in _rules(rule, r):
            out.append(
                {
                    "trial": r["trial"],
                    "benchmark": r["benchmark"],
                    "params": r["params"],
                    "param_defaults": r.get("param_defaults"),
                    "node_label": r.get("node_label") or r["node"],
                    "metric": r["metric"],
                    "median": r["median"],
                    "unit": r["unit"],
                    "expected": asked,
                    "verdict": verdict,
                }
            )
    out.sort(key=lambda e: (e["verdict"] != FAIL, e["trial"]))
    return out

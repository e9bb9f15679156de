#!/usr/bin/env python3
"""Static checks of the deployment files, run by CI after the tests.

1. docker-compose.yml parses, and every container of our image sets only environment variables
   its binary reads (as listed by `<command> --help`), so a renamed setting cannot silently
   stop taking effect; workers stay scalable; every long-running service is scraped.
2. The Grafana dashboard parses and every metric its PromQL names is registered by the code
   (so a renamed metric cannot leave an empty panel).
3. With promtool installed: the Prometheus config, its alert rules and their unit tests.

Binaries come from target/debug (override with BIN_DIR); a missing one is built with
`cargo build --bin NAME` first. Needs PyYAML: exits 3 with a hint when it is missing.
The last line is `N passed, M failed[, K skipped]`; the exit code is non-zero on a failure.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    print("check-deploy: PyYAML is missing; install it with `pip install pyyaml` "
          "(or `apt-get install python3-yaml`) and run again.", file=sys.stderr)
    sys.exit(3)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS = ROOT / "deploy" / "prometheus"
BIN_DIR = Path(os.environ.get("BIN_DIR", ROOT / "target" / "debug"))

# Read by the tracing setup, not by a settings type, so `--help` lists them as extras anyway.
ALWAYS_ALLOWED = {"OTEL_EXPORTER_OTLP_ENDPOINT", "RUST_LOG"}
# Workers that scale with `--scale`: no fixed container name, no host ports.
SCALABLE = {
    "ingest",
    "validator",
    "normalizer",
    "merge-processor",
    "feature-builder",
    "prediction-dispatcher",
}

results = {"passed": 0, "failed": 0, "skipped": 0}


def report(ok, name, detail=""):
    """Prints one check's verdict and counts it (ok=None means skipped)."""
    key, tag = {True: ("passed", "ok  "), False: ("failed", "FAIL"), None: ("skipped", "skip")}[ok]
    results[key] += 1
    print(f"{tag} {name}" + (f": {detail}" if detail else ""))


# ---------------------------------------------------------------- 1. compose


def help_env_vars(command):
    """The variables `command --help` lists: `  NAME  (default: …)` lines and clap's `[env: NAME=`."""
    binary = BIN_DIR / command[0]
    if not binary.exists():
        build = subprocess.run(["cargo", "build", "--locked", "--bin", command[0]], cwd=ROOT,
                               capture_output=True, text=True)
        if build.returncode != 0 or not binary.exists():
            raise RuntimeError(f"{binary} is missing and `cargo build --bin {command[0]}` failed:\n"
                               + build.stderr[-2000:])
    out = subprocess.run([str(binary), *command[1:], "--help"], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)} --help` exited {out.returncode}: {out.stderr.strip()}")
    names = set(re.findall(r"^\s+([A-Z][A-Z0-9_]*)\s+\(default:", out.stdout, re.M))
    names |= set(re.findall(r"\[env:\s*([A-Z][A-Z0-9_]*)", out.stdout))
    if not names:
        raise RuntimeError(f"`{' '.join(command)} --help` lists no environment variables")
    return names


def env_names(environment):
    """Variable names of a compose `environment:` (mapping or list of KEY[=VALUE])."""
    if environment is None:
        return set()
    if isinstance(environment, dict):
        return set(environment)
    return {str(item).split("=", 1)[0] for item in environment}


def is_ours(service):
    """Built from deploy/Dockerfile (the image with every binary)."""
    build = service.get("build")
    dockerfile = build.get("dockerfile", "") if isinstance(build, dict) else ""
    return dockerfile.endswith("deploy/Dockerfile")


def check_compose():
    try:
        compose = yaml.safe_load(COMPOSE.read_text())
        services = compose["services"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        report(False, "docker-compose.yml parses", str(e))
        return {}
    report(True, "docker-compose.yml parses", f"{len(services)} services")
    ours = {name: s for name, s in services.items() if is_ours(s)}
    for name, service in sorted(ours.items()):
        command = service.get("command")
        if isinstance(command, str):
            command = command.split()
        if not command:
            report(False, f"{name}: has a command", "our image needs `command: [binary, …]`")
            continue
        try:
            allowed = help_env_vars(command) | ALWAYS_ALLOWED
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            report(False, f"{name}: `{' '.join(command)} --help` runs", str(e))
            continue
        unknown = sorted(env_names(service.get("environment")) - allowed)
        report(not unknown, f"{name}: sets only variables `{command[0]}` reads",
               f"not read: {', '.join(unknown)}" if unknown else "")
        for dep, cond in (service.get("depends_on") or {}).items() if isinstance(
                service.get("depends_on"), dict) else []:
            wanted = {"migrate": "service_completed_successfully"}.get(dep, "service_healthy")
            got = (cond or {}).get("condition")
            report(got == wanted, f"{name}: waits for {dep} ({wanted})", "" if got == wanted else f"got {got}")
    for name in sorted(SCALABLE):
        service = services.get(name)
        if service is None:
            report(False, f"{name}: is in docker-compose.yml")
            continue
        fixed = [k for k in ("container_name", "ports") if k in service]
        report(not fixed, f"{name}: scalable (no container_name, no host ports)", ", ".join(fixed))
    redis = " ".join(map(str, services.get("redis", {}).get("command", [])))
    for flag in ("--appendonly yes", "--maxmemory-policy noeviction"):
        report(flag in redis, f"redis: runs with {flag}")
    return ours


def check_scrape_jobs(ours):
    """Every long-running service of ours is a Prometheus job, and every job is a service."""
    try:
        config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    except (OSError, yaml.YAMLError) as e:
        report(False, "prometheus.yml parses", str(e))
        return
    scraped = set()
    for job in config.get("scrape_configs", []):
        for sd in job.get("dns_sd_configs", []):
            scraped |= set(sd.get("names", []))
    running = {n for n, s in ours.items() if str(s.get("restart", "")) != "no"}
    missing, stray = sorted(running - scraped), sorted(scraped - set(ours))
    report(not missing and not stray, "prometheus scrapes every service replica (dns_sd_configs)",
           f"not scraped: {missing}; not a service: {stray}" if missing or stray else "")


# ---------------------------------------------------------------- 2. dashboard

PROMQL_WORDS = {
    # aggregations and their modifiers
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "bool", "and", "or", "unless", "atan2", "inf", "nan",
    # Grafana template helpers
    "label_values", "query_result", "metrics", "label_names",
}
BUILTIN_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def metric_kind(text, field):
    """Counter, Gauge or Histogram: the first of them in the type declared for `field`
    (`Family<Labels, Counter>`, `HistogramFamily<Labels>`, `Gauge`), or None."""
    for decl in re.findall(rf"\b{re.escape(field)}\s*:\s*([^\n;=]*)", text):
        kind = re.search(r"(Counter|Gauge|Histogram)", decl)
        if kind:
            return kind.group(1)
    return None


def registered_metrics():
    """Exported metric names: names passed to `register(` plus the `"prefix_…"` strings in the
    code, with `_total` for counters and `_bucket/_sum/_count` handled by the caller."""
    names, counters, unknown_type = set(), set(), set()
    literal = re.compile(r'"((?:bus|ingest|crawler|validator|broadcaster|command_broadcaster)_[a-z0-9_]+)"')
    register = re.compile(r'register\(\s*"([a-z_:][a-z0-9_:]*)"\s*,\s*"(?:[^"\\]|\\.)*"\s*,\s*([^)]*?)\)', re.S)
    for path in list((ROOT / "crates").rglob("*.rs")) + list((ROOT / "services").rglob("*.rs")):
        text = path.read_text(errors="replace")
        names |= set(literal.findall(text))
        for name, arg in register.findall(text):
            names.add(name)
            # `s.acked.clone()` → field `acked`; its declared type tells a counter.
            fields = re.findall(r"\.?([a-z_][a-z0-9_]*)\s*\.clone", arg) or re.findall(r"([a-z_][a-z0-9_]*)", arg)
            field = fields[-1] if fields else ""
            kind = metric_kind(text, field) if field else None
            if kind is None:
                unknown_type.add(name)
            elif kind == "Counter":
                counters.add(name)
    exported = {n for n in names if n not in counters}
    exported |= {f"{n}_total" for n in counters | unknown_type}
    return exported


def promql_metric_names(expr):
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside `{…}` and `by (…)`), strings, durations or template variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(label_values)\s*\(([^,()]*),[^()]*\)", r"\1(\2)", expr)  # its label arg
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = m.group(0)
        following = expr[m.end():].lstrip()
        if word.lower() in PROMQL_WORDS or following.startswith("("):
            continue  # keyword or function call
        if re.fullmatch(r"\d+[smhdwy]", word) or expr[max(0, m.start() - 1)].isdigit():
            continue
        names.add(word)
    return names


def dashboard_exprs(node):
    """Every PromQL string in a dashboard: panel targets (rows nest panels) and variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str) and node.get("type") == "query":
                yield value
            else:
                yield from dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def unknown_metrics(exprs, known):
    """Metric names in `exprs` that the code does not export (histogram suffixes allowed)."""
    unknown = set()
    for expr in exprs:
        for name in promql_metric_names(expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in known and base not in known:
                unknown.add(name)
    return unknown


def check_dashboards():
    known = registered_metrics() | BUILTIN_SERIES
    try:
        rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
        exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
        unknown = unknown_metrics(exprs, known)
        report(not unknown, "alerts.yml: every metric is registered by the code",
               f"unknown: {', '.join(sorted(unknown))}" if unknown else f"{len(exprs)} rules")
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        report(False, "alerts.yml parses", str(e))
    files = sorted(DASHBOARDS.glob("*.json"))
    report(bool(files), "a Grafana dashboard exists", str(DASHBOARDS))
    for path in files:
        try:
            dashboard = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            report(False, f"{path.name} parses", str(e))
            continue
        exprs = list(dashboard_exprs(dashboard))
        report(bool(exprs), f"{path.name} parses", f"{len(exprs)} queries")
        unknown = unknown_metrics(exprs, known)
        report(not unknown, f"{path.name}: every metric is registered by the code",
               f"unknown: {', '.join(sorted(unknown))}" if unknown else "")


# ---------------------------------------------------------------- 3. promtool


def check_promtool():
    promtool = shutil.which("promtool")
    steps = [("config", PROMETHEUS / "prometheus.yml"), ("rules", PROMETHEUS / "alerts.yml")]
    tests = PROMETHEUS / "alerts.test.yml"
    if tests.exists():
        steps.append(("test rules", tests))
    for what, path in steps:
        name = f"promtool {what} {path.relative_to(ROOT)}"
        if promtool is None:
            report(None, name, "promtool not installed (Debian package `prometheus`)")
            continue
        args = [promtool, "test", "rules", str(path)] if what == "test rules" \
            else [promtool, "check", what, str(path)]
        out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        report(out.returncode == 0, name, "" if out.returncode == 0 else (out.stdout + out.stderr).strip())


def main():
    ours = check_compose()
    check_scrape_jobs(ours)
    check_dashboards()
    check_promtool()
    line = f"{results['passed']} passed, {results['failed']} failed"
    if results["skipped"]:
        line += f", {results['skipped']} skipped"
    print(line)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

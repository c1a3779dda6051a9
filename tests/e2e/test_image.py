"""The image, built by ``scripts/image build`` and run with podman the way it is run.

The Dockerfile says ``docker run IMAGE`` runs ``tidings up``; the operator's pods run
``tidings serve <component>`` and the chart runs ``tidings-operator run``, all as uid
10001 on a read-only root with every capability dropped. Here the pod specs come from
the operator's own builders (``region_children``) and the chart's values, and
``containers.pod_run`` turns them into podman options, so a wrong command, variable,
mount path, probe path, port or user fails here, not first on a cluster. The containers
share the host's network (each on a port of its own) and the loopback servers.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from containers import Container, image_config, pod_run, run_once, running, security_args
from harness import Gateway
from operator_support import free_port
from sdk_support import receive, sdk_client
from servers import ROOT, unique_region
from tidings_operator.models import REGION_COMPONENTS, ChatRegion, parse
from tidings_operator.models.base import ResourceRequirements
from tidings_operator.names import OPS_PORT, SETTINGS_PORT, component_name
from tidings_operator.resources import pods
from tidings_operator.resources.region import region_children

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHART = ROOT / "charts" / "tidings"
BUILD_TOOLS = ("gcc", "cc", "c++", "clang", "make", "cargo", "rustc")
S3_SECRET = "s3-credentials"
SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
PINNED = re.findall(r"^([A-Za-z0-9_.-]+)==", (ROOT / "constraints.txt").read_text(), re.MULTILINE)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def operator_pod(image: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod spec and container the operator gives every platform process."""
    main = pods.container(
        "gateway",
        image=image,
        pull_policy="Never",
        env_from_config_map="settings",
        env=[],
        resources=ResourceRequirements(),
    )
    template = pods.pod_template(labels={}, annotations={}, service_account="t", container=main)
    return template["spec"], main


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5.0) as http:
        return await http.get(url)


def empty_dir(path: Path) -> Path:
    """A host directory standing in for an emptyDir (world-writable, as the kubelet's)."""
    path.mkdir(parents=True)
    path.chmod(0o777)
    return path


# --------------------------------------------------------------------------- the image


def test_the_image_config_is_what_the_pods_and_the_chart_expect(tidings_image: str) -> None:
    config = image_config(tidings_image)
    spec, main = operator_pod(tidings_image)
    assert config["User"] == f"{pods.RUN_AS}:{pods.RUN_AS}", "numeric: runAsNonRoot checks it"
    assert spec["securityContext"]["runAsUser"] == pods.RUN_AS
    assert config["Entrypoint"] == main["command"] == ["tidings"]
    assert config["Cmd"] == ["up"]
    assert set(config["ExposedPorts"]) == {f"{SETTINGS_PORT}/tcp", f"{OPS_PORT}/tcp"}
    assert [p["containerPort"] for p in main["ports"]] == [SETTINGS_PORT, OPS_PORT]
    assert config["WorkingDir"] == pods.DATA_DIR
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["TIDINGS_DATA_DIR"] == pods.DATA_DIR
    assert env["TIDINGS_HOST"] == "0.0.0.0"
    assert env["TIDINGS_PORT"] == str(SETTINGS_PORT)
    assert env["TIDINGS_OPS_PORT"] == str(OPS_PORT)
    assert env["PATH"].startswith("/opt/tidings/bin:")
    labels = {
        k.removeprefix("org.opencontainers.image."): v
        for k, v in config["Labels"].items()
        if k.startswith("org.opencontainers.image.")
    }
    assert {"title", "description", "version", "revision", "base.name"} <= set(labels)
    assert labels["title"] == "tidings"


INSPECT = """
import json, os, pwd, shutil, subprocess, sys
tools, scripts = sys.argv[1].split(","), sys.argv[2].split(",")
wheels = []
for d, dirs, fs in os.walk("/"):
    if d in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    wheels += [os.path.join(d, f) for f in fs if f.endswith(".whl")]
data = os.stat("/var/lib/tidings")
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "user": pwd.getpwuid(os.getuid()).pw_name,
    "wheels": wheels,
    "wheel_dir": os.path.exists("/wheels"),
    "tools": {t: shutil.which(t) for t in tools if shutil.which(t)},
    "pip_caches": [p for p in ("/root/.cache/pip", "/var/lib/tidings/.cache") if os.path.exists(p)],
    "scripts": {s: shutil.which(s) for s in scripts},
    "helps": {s: subprocess.run([s, "--help"], capture_output=True, text=True).stdout[:200]
              for s in scripts},
    "data_dir": [data.st_uid, data.st_gid, oct(data.st_mode & 0o777)],
    "root_writable": os.access("/opt/tidings", os.W_OK),
}))
"""


def test_the_final_image_holds_no_wheels_compilers_or_caches(
    tidings_image: str, tmp_path: Path
) -> None:
    """Run as the pods run it: the final stage installed the wheels (bind-mounted from
    the builder, never copied), keeps no compiler and no pip cache, and each console
    script is on PATH and answers ``--help``."""
    spec, main = operator_pod(tidings_image)
    tmp = empty_dir(tmp_path / "tmp")
    done = run_once(
        tidings_image,
        [*security_args(spec, main), "-v", f"{tmp}:/tmp", "--entrypoint", '["python"]'],
        ["-c", INSPECT, ",".join(BUILD_TOOLS), ",".join(SCRIPTS)],
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert (seen["uid"], seen["gid"], seen["user"]) == (pods.RUN_AS, pods.RUN_AS, "tidings")
    assert not seen["wheel_dir"]
    # Debian's python3-venv keeps pip's and setuptools' wheels for ensurepip (as the
    # official images' ensurepip does): the base's, not the build's.
    built = {canonical(n) for n in PINNED} | {"tidings"}
    assert [w for w in seen["wheels"] if canonical(Path(w).name.split("-")[0]) in built] == []
    assert seen["tools"] == {}, "the final stage has no build tools"
    assert seen["pip_caches"] == []
    assert seen["scripts"] == {s: f"/opt/tidings/bin/{s}" for s in SCRIPTS}
    for script, help_text in seen["helps"].items():
        # A kubectl plugin names itself as kubectl shows it: `kubectl tidings`.
        assert help_text.startswith(f"usage: {script.replace('kubectl-', 'kubectl ')}"), help_text
    assert seen["data_dir"] == [pods.RUN_AS, pods.RUN_AS, "0o750"]
    assert not seen["root_writable"], "the root filesystem is read-only"


# --------------------------------------------------------------------------- tidings up


async def test_tidings_up_as_the_dockerfile_runs_it_serves_a_conversation(
    tidings_image: str, tmp_path: Path
) -> None:
    """``docker run IMAGE`` (the image's own command, ``tidings up`` on the embedded
    engines), hardened as the operator hardens its pods, with a data volume; two SDK
    clients register through it and exchange an end-to-end encrypted message, which its
    metrics count on the operations port (the client port has none); SIGTERM stops it
    cleanly."""
    spec, main = operator_pod(tidings_image)
    data, tmp = empty_dir(tmp_path / "data"), empty_dir(tmp_path / "tmp")
    port, ops_port = free_port(), free_port()
    options = [
        *security_args(spec, main),
        "-v",
        f"{data}:{pods.DATA_DIR}",
        "-v",
        f"{tmp}:/tmp",
        "-e",
        f"TIDINGS_PORT={port}",
        "-e",
        f"TIDINGS_OPS_PORT={ops_port}",
    ]
    with running(tidings_image, options, [], port=port, label="up") as up:
        up.wait_ready()
        await converse(Gateway(up.url, data), tmp_path / "clients", "hello from the image")
        ops = f"http://127.0.0.1:{ops_port}"
        # Its start-up line names the address it listens on (TIDINGS_HOST=0.0.0.0).
        assert f"metrics    http://0.0.0.0:{ops_port}/metrics" in up.logs(tail=100_000)
        assert (await get(f"{up.url}/metrics")).status_code == 404
        metrics = (await get(f"{ops}/metrics")).text
        assert 'tidings_messages_accepted_total{kind="direct"} 1.0' in metrics
        assert up.stop() == 0, up.logs()
    assert (data / "users.db").exists(), "the embedded engines keep their state in the volume"


async def converse(gateway: Gateway, home: Path, text: str) -> None:
    """Two SDK clients register (codes from the dev-mode outbox in the data volume) and
    one sends the other an end-to-end encrypted message."""
    home.mkdir(exist_ok=True)
    alice = await sdk_client(gateway, home, "alice")
    bob = await sdk_client(gateway, home, "bob")
    try:
        await alice.send_text(bob.user_id, text)
        (got,) = await receive(bob, 1)
        assert (got.text, got.sender_user) == (text, alice.user_id)
    finally:
        await alice.close()
        await bob.close()


# --------------------------------------------------------------------------- a region


def region_manifest(image: str, name: str, env: Mapping[str, str]) -> dict[str, Any]:
    """A ChatRegion on the session's loopback servers (one keyspace for the session, a
    region of the test's own: its topics, Redis keys and channels are its alone)."""
    dc = env["TIDINGS_CASSANDRA_LOCAL_DC"]
    return {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "ChatRegion",
        # The uid the API server would give it (the children's owner reference).
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {
            "image": image,
            "imagePullPolicy": "Never",
            "devMode": True,
            "kafka": {
                "bootstrapServers": env["TIDINGS_KAFKA_BOOTSTRAP"],
                "partitions": 2,
                "replicationFactor": 1,
            },
            "cassandra": {
                "contactPoints": env["TIDINGS_CASSANDRA_CONTACT_POINTS"].split(","),
                "port": int(env["TIDINGS_CASSANDRA_PORT"]),
                "datacenter": dc,
                "keyspace": env["TIDINGS_CASSANDRA_KEYSPACE"],
                "replication": {dc: 1},
            },
            "redis": {"url": env["TIDINGS_REDIS_URL"]},
            "s3": {
                "endpoint": env["TIDINGS_S3_ENDPOINT"],
                "bucket": env["TIDINGS_S3_BUCKET"],
                "credentialsSecret": {"name": S3_SECRET},
            },
            "shards": 2,
        },
    }


async def test_a_region_runs_from_the_image_as_the_operator_specifies_its_pods(
    tidings_image: str, distributed_env: dict[str, str], tmp_path: Path
) -> None:
    """Every component of a ChatRegion (``tidings serve <component>``) started from the
    Deployment the operator builds: settings from its ConfigMap, S3 keys from a Secret,
    the shard map mounted read-only, emptyDirs for data and /tmp, its securityContext.
    Each passes its readiness probe and serves ``/metrics`` where its
    ``prometheus.io/port`` annotation says (the ``ops`` port, not the client port); two
    clients register through the gateway and a message crosses the gateway, Kafka, the
    delivery worker and Redis; each stops cleanly on SIGTERM."""
    found = parse(region_manifest(tidings_image, unique_region(), distributed_env))
    assert isinstance(found, ChatRegion)
    region = found
    children = region_children(region)
    config_maps = {c["metadata"]["name"]: c["data"] for c in children if c["kind"] == "ConfigMap"}
    deployments = {c["metadata"]["name"]: c for c in children if c["kind"] == "Deployment"}
    secrets = {
        S3_SECRET: {
            "accessKey": distributed_env["TIDINGS_S3_ACCESS_KEY"],
            "secretKey": distributed_env["TIDINGS_S3_SECRET_KEY"],
        }
    }
    started: dict[str, Container] = {}
    ops_urls: dict[str, str] = {}
    with ExitStack() as stack:
        # The gateway first: it applies the schema migrations the others then find done.
        for component in ("gateway", *(c for c in REGION_COMPONENTS if c != "gateway")):
            deployment = deployments[component_name(region.region, component)]
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            # The host's network is shared: each named port of the pod gets a free one.
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports == {"http": SETTINGS_PORT, "ops": OPS_PORT}
            port, ops_port = free_port(), free_port()
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == str(ports["ops"])
            ops_urls[component] = f"http://127.0.0.1:{ops_port}{annotations['prometheus.io/path']}"
            options, command, volumes = pod_run(
                deployment,
                tmp_path / component,
                config_maps=config_maps,
                secrets=secrets,
                env={"TIDINGS_PORT": str(port), "TIDINGS_OPS_PORT": str(ops_port)},
            )
            probe = container["readinessProbe"]["httpGet"]
            assert probe["port"] == "http"
            started[component] = stack.enter_context(
                running(
                    tidings_image,
                    options,
                    command,
                    port=port,
                    volumes=volumes,
                    ready_path=probe["path"],
                    label=component,
                )
            )
            if component == "gateway":
                started[component].wait_ready()
        for container_ in started.values():
            container_.wait_ready()

        gateway = started["gateway"]
        await converse(
            Gateway(gateway.url, gateway.volumes["data"], engine="distributed"),
            tmp_path / "clients",
            "hello through a region of containers",
        )
        for component, container_ in started.items():
            scraped = await get(ops_urls[component])
            assert scraped.status_code == 200, component
            assert "tidings_http_requests_total" in scraped.text, component
            assert (await get(f"{container_.url}/metrics")).status_code == 404
        for component, container_ in started.items():
            assert container_.stop() == 0, f"{component}:\n{container_.logs()}"


# --------------------------------------------------------------------------- the operator


def chart_operator_container() -> tuple[dict[str, Any], dict[str, Any]]:
    """The chart's operator pod: its ``securityContext`` values (the template writes
    them out as they are) and its container's command and /tmp volume."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    template = (CHART / "templates" / "deployment.yaml").read_text()
    (command,) = re.findall(r"^\s*command: (\[.*\])$", template, re.MULTILINE)
    assert "mountPath: /tmp" in template
    spec = {"securityContext": values["podSecurityContext"]}
    container = {"command": json.loads(command), "securityContext": values["securityContext"]}
    return spec, container


def test_the_operator_entrypoint_runs_as_the_chart_runs_it(
    tidings_image: str, tmp_path: Path
) -> None:
    """``tidings-operator run`` (the chart's command) under the chart's securityContext
    parses its options; running it for real needs an API server (the kube tests)."""
    spec, container = chart_operator_container()
    assert container["command"] == ["tidings-operator", "run"]
    tmp = empty_dir(tmp_path / "tmp")
    done = run_once(
        tidings_image,
        [
            *security_args(spec, container),
            "-v",
            f"{tmp}:/tmp",
            "-e",
            "TIDINGS_OPERATOR_STANDALONE=true",
            "--entrypoint",
            json.dumps(container["command"]),
        ],
        ["--help"],
    )
    assert done.returncode == 0, done.stderr
    for option in ("--namespace", "--all-namespaces", "--peering", "--standalone"):
        assert option in done.stdout
    version = run_once(
        tidings_image,
        [*security_args(spec, container), "--entrypoint", '["tidings-operator"]'],
        ["--version"],
    )
    assert version.returncode == 0, version.stderr
    assert re.search(r"tidings-operator \d+\.\d+", version.stdout + version.stderr)

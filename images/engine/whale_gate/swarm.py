"""Swarm: the rules for the swarm's settings, services, secrets and configs."""
from .containers import check_caps, check_log_driver, check_sysctls
from .decision import Refused, _q
from .jsonbody import check
from .mounts import check_mount, mounts_without_copy
from .networks import check_endpoint
from .schema import CONFIG_SPEC, SECRET_SPEC, SERVICE_SPEC, SWARM_INIT, SWARM_SPEC


def body_swarm_init(body, resolve):
    check(body, SWARM_INIT)
    check_swarm_spec(body.get("Spec"))
    return body


def body_swarm_update(body, resolve):
    check(body, SWARM_SPEC)
    check_swarm_spec(body)
    return body


def check_swarm_spec(spec: dict | None) -> None:
    if not spec:
        return
    if (spec.get("CAConfig") or {}).get("ExternalCAs"):
        raise Refused("an external certificate authority for the swarm (CAConfig.ExternalCAs, --external-ca)",
                      "the engine would send requests to an address you choose")
    driver = (spec.get("TaskDefaults") or {}).get("LogDriver") or {}
    check_log_driver(driver.get("Name"), driver.get("Options"), "TaskDefaults.LogDriver")


def body_service(body, resolve):
    check(body, SERVICE_SPEC)
    task = body.get("TaskTemplate") or {}
    if task.get("PluginSpec") is not None:
        raise Refused("a plugin service (TaskTemplate.PluginSpec)",
                      "a plugin runs with the engine's privileges")
    if task.get("NetworkAttachmentSpec") is not None:
        raise Refused("a network attachment task (TaskTemplate.NetworkAttachmentSpec)",
                      "it is Docker's internal kind of task")
    if (task.get("Runtime") or "") not in ("", "container"):
        raise Refused(f"the task runtime {_q(task['Runtime'])} (TaskTemplate.Runtime)",
                      "services run containers here")
    driver = task.get("LogDriver") or {}
    check_log_driver(driver.get("Name"), driver.get("Options"), "--log-driver")
    for attachment in (task.get("Networks") or []) + (body.get("Networks") or []):
        check_endpoint((attachment or {}).get("Target") or "", attachment)
    spec = task.get("ContainerSpec") or {}
    check_caps(spec.get("CapabilityAdd"), " to a service")
    privileges = spec.get("Privileges") or {}
    if privileges.get("CredentialSpec") is not None or privileges.get("SELinuxContext") is not None:
        raise Refused("a service's credential spec or SELinux context (--credential-spec)",
                      "they are for other platforms")
    seccomp = privileges.get("Seccomp") or {}
    if (seccomp.get("Mode") or "") not in ("", "default") or seccomp.get("Profile"):
        raise Refused("a service's seccomp profile (--security-opt seccomp=…)")
    if ((privileges.get("AppArmor") or {}).get("Mode") or "") not in ("", "default"):
        raise Refused("a service's AppArmor mode (--security-opt apparmor=…)")
    check_sysctls(spec.get("Sysctls"), " in a service")
    for port in ((body.get("EndpointSpec") or {}).get("Ports") or []):
        if (port or {}).get("PublishedPort") in ENGINE_PORTS:
            raise Refused(f"publishing the engine's own port {port['PublishedPort']} (--publish)",
                          "the engine answers there; the swarm's ingress would take it over")
    for reference in [*(spec.get("Secrets") or []), *(spec.get("Configs") or [])]:
        check_file_owner((reference or {}).get("File"))
    if (spec.get("Isolation") or "") not in ("", "default"):
        raise Refused(f"the isolation {_q(spec['Isolation'])} (--isolation)", "there is one isolation here")
    if (spec.get("OomScoreAdj") or 0) < 0:
        raise Refused("a negative OOM score adjustment (--oom-score-adj)",
                      "it would protect a container from the out-of-memory killer at others' expense")
    for mount in spec.get("Mounts") or []:
        if has_template(mount):
            raise Refused("a template in a service's mount ({{…}} in --mount)", TEMPLATED_MOUNT)
        check_mount(mount, resolve, " in a service")
    mounts_without_copy(spec.get("Mounts"))
    return body


# The swarm fills templates into a task's mounts (source, target, volume labels and
# options) when it creates the task, after this gate has checked the service: the
# seventh red team named another container's anonymous volume as
# {{index .Service.Labels "v"}}, round the check of anonymous volume names, and had
# the engine's copy into it write the engine's own files.
TEMPLATED_MOUNT = "the swarm fills templates in after this check, so what would be mounted cannot be checked"


def has_template(value) -> bool:
    """Whether a Go template ({{ … }}) appears anywhere in a JSON value."""
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, dict):
        return any(has_template(k) or has_template(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    return False


# The gate's TLS port and the swarm's own ports: a service published there would be
# routed before the gate (the ninth red team, from libnetwork's ingress rules).
ENGINE_PORTS = frozenset({2376, 2377, 7946, 4789})


def check_file_owner(target: dict | None) -> None:
    """A secret or config file's owner: a user id of the container (0 to 65535). dockerd
    adds the engine's remapped root to it: the eighth red team's -100000 made a file
    owned by the engine's real root."""
    for field in ("UID", "GID"):
        value = (target or {}).get(field)
        if value in (None, ""):
            continue
        if not (value.isascii() and value.isdigit() and int(value) <= 65535):
            raise Refused(f"the {field} {_q(value)} of a secret or config file (--secret uid=…)",
                          "it is a user id inside the container, from 0 to 65535")


def body_secret(body, resolve):
    check(body, SECRET_SPEC)
    if body.get("Driver") is not None:
        raise Refused("a secret from a secrets driver (Driver, --driver)", "secrets drivers are plugins")
    if body.get("Templating") is not None:
        raise Refused("a templated secret (Templating, --template-driver)",
                      "templates read the engine's data")
    return body


def body_config(body, resolve):
    check(body, CONFIG_SPEC)
    if body.get("Templating") is not None:
        raise Refused("a templated config (Templating, --template-driver)",
                      "templates read the engine's data")
    return body



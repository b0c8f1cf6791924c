"""The acv host API as generated programs see it (`import acv`).

Every function takes an optional keyword `component=None` (None = own component); the host refuses any other
component, except for `ask_peer`. Values are plain dicts/lists decoded from the JSON of the acv_protocol::cluster
types. Failures raise `acv.HostError` with attributes `kind` and `message`.

This wrapper is a convenience, not a security boundary: the host checks every call again.
"""

import json as _json

from componentize_py_types import Err as _Err
from wit_world.imports import host as _host


class HostError(Exception):
    """A host call failed or was refused. `kind` is a stable word such as "refused" or "approval_required"."""

    def __init__(self, kind, message):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def _call(fn, *args):
    try:
        return fn(*args)
    except _Err as e:
        raise HostError(e.value.kind, e.value.message) from None


def _int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise HostError("invalid_argument", f"{name} must be an int, got {type(value).__name__}")
    if value < -(2**63) or value >= 2**63:
        raise HostError("invalid_argument", f"{name} is out of range")
    return value


def _str(name, value):
    if not isinstance(value, str):
        raise HostError("invalid_argument", f"{name} must be a str, got {type(value).__name__}")
    return value


def _comp(component):
    if component is None:
        return None
    return _str("component", component)


def component():
    """The own component's name."""
    return _host.own_component()


def status(component=None):
    """ComponentStatus as a dict."""
    return _json.loads(_call(_host.status, _comp(component)))


def metrics(window_secs=60, component=None):
    """MetricsSnapshot over the last `window_secs` seconds, as a dict."""
    if isinstance(window_secs, float) and window_secs.is_integer():
        window_secs = int(window_secs)
    return _json.loads(_call(_host.metrics, _comp(component), _int("window_secs", window_secs)))


def logs(tail=100, component=None):
    """The last `tail` log lines (oldest first), as a list of str."""
    return list(_call(_host.logs, _comp(component), _int("tail", tail)))


def history(component=None):
    """Revision list, oldest first, as a list of dicts."""
    return _json.loads(_call(_host.history, _comp(component)))


def scale(replicas, component=None):
    """Sets the replica count; returns ComponentStatus after, as a dict. Mutating."""
    return _json.loads(_call(_host.scale, _comp(component), _int("replicas", replicas)))


def restart(component=None):
    """Restarts every replica. Mutating."""
    _call(_host.restart, _comp(component))
    return None


def set_image(image, component=None):
    """Rolls out a new image; returns the new Revision as a dict. Mutating."""
    return _json.loads(_call(_host.set_image, _comp(component), _str("image", image)))


def set_env(key, value, component=None):
    """Sets one environment variable; returns the new Revision as a dict. Mutating."""
    return _json.loads(_call(_host.set_env, _comp(component), _str("key", key), _str("value", value)))


def set_resources(cpu_millis, memory_mib, component=None):
    """Sets CPU (millicores) and memory (MiB) limits; returns the new Revision as a dict. Mutating."""
    return _json.loads(
        _call(_host.set_resources, _comp(component), _int("cpu_millis", cpu_millis), _int("memory_mib", memory_mib))
    )


def rollback(component=None):
    """Rolls back to the previous revision; returns the Revision now current, as a dict. Mutating."""
    return _json.loads(_call(_host.rollback, _comp(component)))


def report(status, message, component=None):
    """Reports the step's outcome: status "RESPONSE" or "ISSUE". The last call is the step's report."""
    _call(_host.report, _comp(component), _str("status", status), _str("message", message))
    return None


def ask_peer(component, question):
    """Asks another component's agent a question (mechanism 3); returns its answer as a str."""
    return _call(_host.ask_peer, _str("component", component), _str("question", question))

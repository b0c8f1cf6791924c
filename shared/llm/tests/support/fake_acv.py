"""A fake `acv` host module for tests: the host API contract over an in-memory component.

Usage: python3 fake_acv.py STATE.json < program.py
Runs the program with `import acv` bound to the fake, then prints one line
`FAKE_RESULT {"calls": [...], "report": ..., "status": ..., "history": [...], "error": ...}`.
Which calls mutate comes from the state's "mutating" list (acv_protocol::MUTATING_CALLS, filled in by the Rust side),
never from a list of its own. A call that failed carries "error" (the HostError kind).
"""
import json
import sys
import traceback
import types


class HostError(Exception):
    def __init__(self, kind, message):
        super().__init__("%s: %s" % (kind, message))
        self.kind = kind
        self.message = message



def main():
    state = json.load(open(sys.argv[1]))
    program = sys.stdin.read()
    own = state["status"]["component"]
    mutating = set(state["mutating"])
    calls = []
    result = {"report": None}
    now = [1_000_000]

    def make_replicas(n, image):
        broken = "broken" in image
        st = "crash_loop_back_off" if broken else "ready"
        return [{"name": "%s-%d" % (own, i), "state": st, "restarts": 0} for i in range(n)]

    def refresh():
        s = state["status"]
        s["replicas"] = make_replicas(s["desired_replicas"], s["image"])
        s["ready_replicas"] = sum(1 for r in s["replicas"] if r["state"] == "ready")

    def new_revision(cause, image=None, env=None, limits=None):
        s = state["status"]
        now[0] += 1000
        rev = {
            "revision": s["revision"] + 1,
            "image": image if image is not None else s["image"],
            "env": env if env is not None else dict(s["env"]),
            "limits": limits if limits is not None else dict(s["limits"]),
            "created_at_ms": now[0],
            "cause": cause,
        }
        state["history"].append(rev)
        s["revision"], s["image"], s["env"], s["limits"] = rev["revision"], rev["image"], rev["env"], rev["limits"]
        refresh()
        return rev

    def host(name):
        def deco(fn):
            def wrapper(*args, component=None, **kwargs):
                if name == "ask_peer" and component is not None:
                    args = (component,) + args
                    component = None
                call = {"name": name, "args": list(args), "kwargs": kwargs, "component": component}
                calls.append(call)
                if component is not None and component != own and name != "ask_peer":
                    call["error"] = "refused"
                    raise HostError("refused", "only %s is addressable" % own)
                if name in mutating and state.get("mode") == "observe":
                    call["error"] = "refused"
                    raise HostError("refused", "observe mode: %s is not allowed" % name)
                try:
                    return fn(*args, **kwargs)
                except HostError as e:
                    call["error"] = e.kind
                    raise
            return wrapper
        return deco

    acv = types.ModuleType("acv")
    acv.HostError = HostError

    @host("component")
    def component():
        return own

    @host("status")
    def status():
        return json.loads(json.dumps(state["status"]))

    @host("metrics")
    def metrics(window_secs=60):
        m = dict(state["metrics"])
        m["window_secs"] = window_secs
        return m

    @host("logs")
    def logs(tail=100):
        return state.get("logs", [])[-tail:]

    @host("history")
    def history():
        return json.loads(json.dumps(state["history"]))

    @host("scale")
    def scale(replicas):
        if not isinstance(replicas, int) or replicas < 0 or replicas > 1000:
            raise HostError("invalid_argument", "bad replica count %r" % (replicas,))
        state["status"]["desired_replicas"] = replicas
        refresh()
        return status()

    @host("restart")
    def restart():
        refresh()
        for r in state["status"]["replicas"]:
            r["restarts"] += 1
        return None

    @host("set_image")
    def set_image(image):
        return new_revision("set_image", image=image)

    @host("set_env")
    def set_env(key, value):
        if not isinstance(key, str) or not isinstance(value, str):
            raise HostError("invalid_argument", "key and value must be strings")
        env = dict(state["status"]["env"])
        env[key] = value
        return new_revision("set_env", env=env)

    @host("set_resources")
    def set_resources(cpu_millis, memory_mib):
        if not isinstance(cpu_millis, int) or not isinstance(memory_mib, int):
            raise HostError("invalid_argument", "limits must be integers")
        return new_revision("set_resources", limits={"cpu_millis": cpu_millis, "memory_mib": memory_mib})

    @host("rollback")
    def rollback():
        h = state["history"]
        if len(h) < 2:
            raise HostError("not_found", "nothing to roll back to")
        prev = h[-2]
        return new_revision("rollback to revision %d" % prev["revision"], image=prev["image"], env=dict(prev["env"]), limits=dict(prev["limits"]))

    @host("report")
    def report(status, message):
        if status not in ("RESPONSE", "ISSUE"):
            raise HostError("invalid_argument", "status must be RESPONSE or ISSUE")
        if not isinstance(message, str):
            raise HostError("invalid_argument", "message must be a string")
        result["report"] = {"status": status, "message": message}

    @host("ask_peer")
    def ask_peer(peer, question):
        return "peer %s says ok" % peer

    for name, fn in list(locals().items()):
        if name in ("component", "status", "metrics", "logs", "history", "scale", "restart", "set_image", "set_env",
                    "set_resources", "rollback", "report", "ask_peer"):
            setattr(acv, name, fn)
    sys.modules["acv"] = acv
    error = None
    try:
        exec(compile(program, "<program>", "exec"), {"__name__": "__main__"})
    except BaseException:  # noqa: BLE001 - report every failure to the test
        error = traceback.format_exc()
    sys.stdout.flush()
    print("FAKE_RESULT " + json.dumps({
        "calls": calls, "report": result["report"], "status": state["status"], "history": state["history"],
        "error": error,
    }))


if __name__ == "__main__":
    main()

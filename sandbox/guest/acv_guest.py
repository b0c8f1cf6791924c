"""The sandbox guest: runs one generated program per instance with `import acv` available.

Only the modules imported here at build time exist at run time (componentize-py snapshots the interpreter), so the
imports below double as the list of what programs may use. ALLOWED_MODULES is the import allow-list programs see.
This file is a convenience layer, not the security boundary: the host enforces every policy.
"""

import builtins
import linecache
import sys
import traceback

# Stdlib modules offered to programs (keep in sync with ALLOWED_MODULES and docs/sandbox.md).
import bisect
import collections
import copy
import dataclasses
import datetime
import enum
import functools
import heapq
import itertools
import json
import math
import operator
import random
import re
import statistics
import string
import textwrap
import time
import typing

import acv
import wit_world

ALLOWED_MODULES = frozenset(
    {
        "acv",
        "bisect",
        "collections",
        "copy",
        "dataclasses",
        "datetime",
        "enum",
        "functools",
        "heapq",
        "itertools",
        "json",
        "math",
        "operator",
        "random",
        "re",
        "statistics",
        "string",
        "textwrap",
        "time",
        "typing",
    }
)

_REAL_IMPORT = builtins.__import__
PROGRAM_FILE = "<program>"

# Print output reaches the host line by line, so output written before a trap (fuel, deadline) is not lost.
sys.stdout.reconfigure(line_buffering=True)
sys.stderr.reconfigure(line_buffering=True)


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level != 0 or name.partition(".")[0] not in ALLOWED_MODULES:
        raise ImportError(f"module {name!r} is not available in the sandbox", name=name)
    return _REAL_IMPORT(name, globals, locals, fromlist, level)


def _no_files(*args, **kwargs):
    raise PermissionError("file access is not available in the sandbox")


def _absent(name):
    def f(*args, **kwargs):
        raise RuntimeError(f"{name}() is not available in the sandbox")

    return f


def _program_builtins():
    b = dict(builtins.__dict__)
    b["__import__"] = _guarded_import
    b["open"] = _no_files
    for name in ("input", "breakpoint", "help", "exit", "quit", "copyright", "credits", "license"):
        b[name] = _absent(name)
    return b


_HIDDEN_FILES = frozenset({__file__, acv.__file__})


def _strip_frames(te, seen):
    # Hide the frames of this wrapper and of the `acv` module so tracebacks point at the program's own lines.
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename not in _HIDDEN_FILES])
    _strip_frames(te.__cause__, seen)
    _strip_frames(te.__context__, seen)


def _traceback(exc):
    te = traceback.TracebackException.from_exception(exc)
    _strip_frames(te, set())
    return "".join(te.format())


class WitWorld(wit_world.WitWorld):
    def run(self, program: str) -> wit_world.RunResult:
        linecache.cache[PROGRAM_FILE] = (len(program), None, program.splitlines(True), PROGRAM_FILE)
        ok, tb, kind = True, None, None
        try:
            code = compile(program, PROGRAM_FILE, "exec")
            exec(code, {"__name__": "__main__", "__builtins__": _program_builtins()})
        except SystemExit as e:
            if e.code not in (None, 0):
                ok, tb = False, _traceback(e)
        except BaseException as e:  # noqa: BLE001 - everything the program raises is reported, never re-raised
            ok, tb = False, _traceback(e)
            if isinstance(e, acv.HostError):
                kind = e.kind
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001 - a full or closed stream must not hide the result
                pass
        return wit_world.RunResult(ok=ok, traceback=tb, host_error_kind=kind)

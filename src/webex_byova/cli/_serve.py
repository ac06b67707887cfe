"""``byova serve APP``: find a user's media server (``module:attr`` or a file) and run it."""

from __future__ import annotations

import errno
import importlib
import importlib.util
import ipaddress
import socket
import sys
import sysconfig
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..media.config import MediaServerConfig
from ..media.server import BYOVAMediaServer
from ._app import CLIError

__all__ = [
    "AppLoadError",
    "ListenError",
    "PortInUseError",
    "app_traceback",
    "apply_overrides",
    "bind_address",
    "check_port_free",
    "exposure_warning",
    "is_file_target",
    "is_loopback",
    "load_app",
    "split_spec",
]

_CANDIDATE_NAMES = ("server", "app", "media_server")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


class AppLoadError(CLIError):
    """``APP`` does not name a media server, or importing it failed."""


class ListenError(CLIError):
    """The server cannot listen on the address it was given."""


class PortInUseError(ListenError):
    """The address to listen on is taken by another process."""


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return (*(str(Path(d).resolve()) for d in dirs), str(_PACKAGE_DIR))


def app_traceback(exc: BaseException) -> str:
    """The frames of ``exc`` that are the app's own code, formatted like a traceback.

    ``exc`` was raised while importing the app: frames of the import machinery, the
    standard library, installed libraries and this package are left out (for an app that
    is itself installed, only the innermost frame is shown). ``""`` without frames.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    libs = _library_dirs()
    own = [
        f
        for f in frames
        if not f.filename.startswith("<") and not str(Path(f.filename).resolve()).startswith(libs)
    ]
    shown = own or frames[-1:]
    if not shown:
        return ""
    return "App traceback (most recent call last):\n" + "".join(traceback.format_list(shown))


def _load_failure(target: str, exc: BaseException) -> AppLoadError:
    if isinstance(exc, SyntaxError):
        where = Path(exc.filename).name if exc.filename else target
        column = f", column {exc.offset}" if exc.offset else ""
        return AppLoadError(
            f"cannot load {target}: SyntaxError in {where} line {exc.lineno}{column}: {exc.msg}"
        )
    message = f"cannot load {target}: {type(exc).__name__}: {exc}"
    frames = app_traceback(exc)
    return AppLoadError(f"{message}\n{frames}".rstrip("\n") if frames else message)


def _import_target(target: str) -> Any:
    path = Path(target)
    if is_file_target(target):
        if not path.is_file():
            raise AppLoadError(f"no such file: {target}")
        name = f"_byova_app_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path.resolve())
        if spec is None or spec.loader is None:
            raise AppLoadError(f"cannot import {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        parent = str(path.resolve().parent)
        if parent not in sys.path:
            sys.path.insert(0, parent)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise _load_failure(target, exc) from None
        return module
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (target == exc.name or target.startswith(exc.name + ".")):
            raise AppLoadError(f"cannot import module {target!r}: {exc}") from None
        raise _load_failure(target, exc) from None
    except Exception as exc:
        raise _load_failure(target, exc) from None


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) is reachable from this machine only."""
    bare = _bare_host(host)
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to may be public


def bind_address(host: str, port: int) -> str:
    """``host:port`` as the server binds it (IPv6 in brackets; ``0.0.0.0`` for "")."""
    bare = _bare_host(host) or "0.0.0.0"
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def exposure_warning(host: str, port: int, *, tls: bool, verify_tokens: bool) -> str | None:
    """A warning line when the server listens beyond loopback (``None`` on loopback)."""
    if is_loopback(host):
        return None
    where = (
        "ALL network interfaces"
        if _bare_host(host) in _WILDCARDS
        else f"{_bare_host(host)} (not loopback)"
    )
    risks = [
        r for r, bad in (("plaintext", not tls), ("tokens NOT verified", not verify_tokens)) if bad
    ]
    tail = f" ({', '.join(risks)})" if risks else ""
    return (
        f"WARNING: listening on {where} at {bind_address(host, port)}: other machines can "
        f"connect{tail}. Use --host 127.0.0.1 to stay local."
    )


def _bind_candidates(host: str, port: int) -> list[tuple[int, Any]]:
    bare = _bare_host(host)
    if bare in _WILDCARDS:
        return [(socket.AF_INET6, ("::", port)), (socket.AF_INET, ("0.0.0.0", port))]
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ListenError(f"cannot listen on {bind_address(host, port)}: {exc}") from None
    return [(family, addr) for family, _, _, _, addr in infos]


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`ListenError` when the server could not listen on ``host:port``.

    Binds (and closes) a socket the way gRPC does (``SO_REUSEADDR``), so the server's own
    bind never fails later with a C-core log line and a traceback. gRPC listens when any one
    of the addresses it tries works, so this raises only when all of them fail:
    :class:`PortInUseError` when another process holds the port, else the system's reason
    (an address of another machine, a privileged port, a name that does not resolve).
    Port 0 (a free port) is checked for the address alone.
    """
    failures: list[OSError] = []
    for family, addr in _bind_candidates(host, port):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this machine
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                sock.bind(addr)
            except OSError as exc:
                failures.append(exc)
                continue
            return
    if not failures:
        return  # nothing could be tried here: let the server report it
    where = bind_address(host, port)
    if all(f.errno == errno.EADDRINUSE for f in failures):
        raise PortInUseError(
            f"port {port} is already in use on {where}: another process is listening there; "
            "stop it or choose another --port"
        )
    reason = next(f for f in failures if f.errno != errno.EADDRINUSE)
    raise ListenError(f"cannot listen on {where}: {reason.strerror or reason}")


def load_app(spec: str) -> BYOVAMediaServer:
    """Load a :class:`BYOVAMediaServer` from ``module:attr``, ``file.py[:attr]`` or ``module``.

    Without ``attr`` the module's ``server``/``app``/``media_server`` is used, else its only
    ``BYOVAMediaServer``. ``attr`` may also name a zero-argument factory returning one.
    """
    target, attr = split_spec(spec)
    module = _import_target(target)
    if attr:
        if not hasattr(module, attr):
            raise AppLoadError(f"{target} has no attribute {attr!r}")
        obj = getattr(module, attr)
    else:
        obj = None
        for name in _CANDIDATE_NAMES:
            if isinstance(getattr(module, name, None), BYOVAMediaServer):
                obj = getattr(module, name)
                break
        if obj is None:
            found = [v for v in vars(module).values() if isinstance(v, BYOVAMediaServer)]
            if len(found) != 1:
                raise AppLoadError(
                    f"{target} defines {len(found)} BYOVAMediaServer objects; "
                    "name one with module:attr"
                )
            obj = found[0]
    if callable(obj) and not isinstance(obj, BYOVAMediaServer):
        obj = obj()
    if not isinstance(obj, BYOVAMediaServer):
        raise AppLoadError(f"{spec} is a {type(obj).__name__}, not a BYOVAMediaServer")
    return obj


def split_spec(spec: str) -> tuple[str, str]:
    """``APP`` as ``(module or file, attr)``; ``attr`` is ``""`` when not given."""
    target, _, attr = (
        spec.rpartition(":") if spec.count(":") and not _is_drive(spec) else (spec, "", "")
    )
    if not target:
        return spec, ""
    return target, attr


def is_file_target(target: str) -> bool:
    """Whether ``target`` (``APP`` without ``:attr``) names a file rather than a module."""
    return target.endswith(".py") or Path(target).is_file()


def _is_drive(spec: str) -> bool:
    return len(spec) > 2 and spec[1] == ":" and spec[2] in "\\/"


def apply_overrides(server: BYOVAMediaServer, overrides: Mapping[str, Any]) -> MediaServerConfig:
    """Re-validate the server's config with network/TLS ``overrides`` (``None`` = keep)."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return server.config
    try:
        config = MediaServerConfig(**{**server.config.model_dump(), **changes})
    except ValueError as exc:
        raise AppLoadError(f"invalid server options: {exc}") from None
    server.config = config
    return config

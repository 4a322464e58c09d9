"""``sidecar shell``: run the sidecar in this process and inspect its actors interactively."""

import code
import time
from typing import Any

import pykka

from sidecar.actors import messages
from sidecar.actors.messages import GetStatus
from sidecar.app import Sidecar
from sidecar.health import health_report

STATUS_TIMEOUT_S = 2.0

BANNER = """\
Forensic logging sidecar shell: the sidecar runs in this process.
  actors()              running actors
  status()              every actor's status (asks each one GetStatus)
  health()              what GET /health would answer
  wait_serving()        wait until the sidecar is registered and accepting connections
  ask(name, message)    ask the actor of that class, e.g. ask("BatchActor", m.GetStatus())
  tell(name, message)   tell it, without waiting
  m                     the message classes (sidecar.actors.messages)
  sidecar, settings     the running sidecar and its settings
Ctrl-D (or exit()) stops the sidecar gracefully."""


def _ref(name: str) -> pykka.ActorRef[Any]:
    refs = pykka.ActorRegistry.get_by_class_name(name)
    if not refs:
        raise LookupError(f"no running actor of class {name}")
    return refs[0]


def actors() -> list[str]:
    """One line per running actor."""
    return [
        f"{ref.actor_class.__name__:<16} {ref.actor_urn}" for ref in pykka.ActorRegistry.get_all()
    ]


def ask(name: str, message: object, timeout: float = STATUS_TIMEOUT_S) -> Any:
    """Ask the running actor of class ``name`` and wait for its answer."""
    return _ref(name).ask(message, timeout=timeout)


def tell(name: str, message: object) -> None:
    """Tell the running actor of class ``name``."""
    _ref(name).tell(message)


def status() -> dict[str, Any]:
    """Every actor's answer to GetStatus (connections keyed by their URN)."""
    report: dict[str, Any] = {}
    for ref in pykka.ActorRegistry.get_all():
        name = ref.actor_class.__name__
        if name == "Supervisor":
            continue
        key = f"{name} {ref.actor_urn[-8:]}" if name == "ConnectionActor" else name
        try:
            report[key] = ref.ask(GetStatus(), timeout=STATUS_TIMEOUT_S)
        except Exception as exc:
            report[key] = f"no answer: {exc!r}"
    return report


def health() -> dict[str, Any]:
    """What ``GET /health`` would answer now."""
    return health_report()[1]


def wait_serving(timeout: float = 60.0) -> bool:
    """Wait until the sidecar serves (registered with the KMS, accepting connections)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health_report()[0] == 200:
            return True
        time.sleep(0.1)
    return False


def run_shell(sidecar: Sidecar) -> int:
    """Start ``sidecar``, hand the terminal to a Python console, stop it when the console ends."""
    namespace = {
        "actors": actors,
        "ask": ask,
        "tell": tell,
        "status": status,
        "health": health,
        "wait_serving": wait_serving,
        "m": messages,
        "sidecar": sidecar,
        "settings": sidecar.settings,
    }
    sidecar.start()
    try:
        code.interact(banner=BANNER, local=namespace, exitmsg="stopping the sidecar")
    except SystemExit:
        pass
    finally:
        sidecar.shutdown()
    return sidecar.exit_code

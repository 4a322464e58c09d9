"""Finding other actors by role through Pykka's ActorRegistry, and telling them safely."""

from typing import Any

import pykka
from loguru import logger


def find(actor_class_name: str) -> pykka.ActorRef[Any] | None:
    """The running actor of that class, if any (each role runs once)."""
    refs = pykka.ActorRegistry.get_by_class_name(actor_class_name)
    return refs[0] if refs else None


def tell(actor_class_name: str, message: object) -> bool:
    """Tell the running actor of that class; False if there is none (it may be restarting)."""
    ref = find(actor_class_name)
    return ref is not None and tell_ref(ref, message)


def tell_ref(ref: pykka.ActorRef[Any], message: object) -> bool:
    """Tell ``ref``; False if it has stopped meanwhile."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


class SupervisedActor(pykka.ThreadingActor):
    """An actor whose crash is logged and reported to the Supervisor instead of passing silently.

    Pykka does not call ``on_stop`` after a failure; this does, so that sockets, connections
    and tickers are released before a replacement starts.
    """

    role = "actor"

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: object,
    ) -> None:
        logger.bind(component=self.role).opt(
            exception=(exception_type, exception_value, traceback)  # type: ignore[arg-type]
        ).error("{} crashed: {!r}", self.role, exception_value)
        try:
            self.on_stop()
        except Exception as exc:
            logger.bind(component=self.role).warning("cleaning up after the crash failed: {}", exc)
        from sidecar.actors.messages import ChildFailed

        tell("Supervisor", ChildFailed(self.role, repr(exception_value)))

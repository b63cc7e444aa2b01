"""A message stored as a route would start it, for tests that work on the store directly.

begun = await new_message(store, ANONYMOUS, "m-1")    # a NewMessage, `running`
"""

from __future__ import annotations

from service.principal import Principal
from service.storage import MessageStart, NewMessage
from service.storage.store import Store


async def new_message(
    store: Store,
    principal: Principal,
    message_id: str = "m-1",
    *,
    conversation_id: str | None = None,
    question: str = "Q?",
    ensemble_version: str = "v",
    history_max_chars: int = 0,
) -> NewMessage:
    """Start `message_id` on `store`; it must be new (a first version)."""
    begun = await store.begin_message(
        principal,
        MessageStart(
            message_id=message_id,
            conversation_id=conversation_id,
            question=question,
            ensemble="default",
            ensemble_version=ensemble_version,
            trace_id=None,
            history_max_chars=history_max_chars,
        ),
    )
    assert isinstance(begun, NewMessage)
    return begun

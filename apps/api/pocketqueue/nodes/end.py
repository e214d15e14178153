"""EndNode: closes a branch of a flow with a named outcome."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode


class EndNode(AsyncNode):  # type: ignore[misc]
    """Ends the flow and makes `outcome` its final action (wires an otherwise-open action)."""

    def __init__(self, outcome: str) -> None:
        super().__init__()
        self.outcome = outcome

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> str:
        return self.outcome

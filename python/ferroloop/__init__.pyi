import asyncio
from typing import Any, Coroutine, Optional, TypeVar

from ._ferroloop import Handle as Handle, LoopCore, TimerHandle as TimerHandle

_T = TypeVar('_T')

class Loop(LoopCore, asyncio.AbstractEventLoop): ...  # type: ignore[misc]

class EventLoopPolicy(asyncio.DefaultEventLoopPolicy): ...

def new_event_loop() -> Loop: ...
def install() -> None: ...
def run(main: Coroutine[Any, Any, _T], *, debug: Optional[bool] = ...) -> _T: ...

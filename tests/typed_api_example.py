"""A user program written against ferroloop's public API under strict typing.

tests/test_public_typing.py runs it and checks it with `mypy --strict` and
pyright (strict): ferroloop's handles, futures and tasks must be asyncio's types.
"""

import asyncio
import sys

import ferroloop


async def double(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2


async def main() -> list[str]:
    loop = asyncio.get_running_loop()
    events: list[str] = []

    handle: asyncio.Handle = loop.call_soon(events.append, 'soon')
    timer: asyncio.TimerHandle = loop.call_later(0.01, events.append, 'later')
    deadline: float = timer.when()
    fired: asyncio.Future[None] = loop.create_future()
    loop.call_at(deadline, fired.set_result, None)
    await fired

    task: asyncio.Task[int] = loop.create_task(double(21), name='double')
    result: int = await task
    events.append(f'{task.get_name()}={result}')
    events.append(f'handle cancelled={handle.cancelled()}')
    return events


def with_loop_object() -> list[str]:
    loop: ferroloop.Loop = ferroloop.new_event_loop()
    try:
        future: asyncio.Future[str] = loop.create_future()
        loop.call_soon(future.set_result, 'direct')
        text: str = loop.run_until_complete(future)
        return [text, type(loop).__name__]
    finally:
        loop.close()


def with_policy() -> str:
    policy: asyncio.AbstractEventLoopPolicy = ferroloop.EventLoopPolicy()
    loop = policy.new_event_loop()
    try:
        return type(loop).__name__
    finally:
        loop.close()


async def running_loop_name() -> str:
    return type(asyncio.get_running_loop()).__name__


def with_install() -> str:
    ferroloop.install()
    return asyncio.run(running_loop_name())


def entry_points() -> list[str]:
    out: list[str] = ferroloop.run(main())
    out += with_loop_object()
    out.append(with_policy())
    out.append(with_install())
    own: ferroloop.Loop = ferroloop.Loop()
    own.close()
    if sys.version_info >= (3, 12):
        out.append(str(asyncio.run(double(4), loop_factory=ferroloop.new_event_loop)))
    version: str = ferroloop.__version__
    out.append(version)
    return out


if __name__ == '__main__':
    print('\n'.join(entry_points()))

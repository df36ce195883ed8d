"""``python -m ferroloop run [--stats] SCRIPT|-m MODULE [ARGS...]``: an unmodified asyncio
program on ferroloop, and with ``--stats`` a summary of what its loops did."""

import os
import runpy
import sys
import types
import zipfile
from collections.abc import Sequence

HELP = """\
usage: python -m ferroloop run SCRIPT [ARGS...]
       python -m ferroloop run -m MODULE [ARGS...]
       python -m ferroloop run --stats [--slow-callback-duration=SECONDS] SCRIPT|-m MODULE [ARGS...]

Runs a Python program as 'python SCRIPT' or 'python -m MODULE' would, with
ferroloop's policy installed: asyncio.run(), asyncio.new_event_loop() and
asyncio.get_event_loop() give ferroloop loops.

Programs that build their loop themselves (uvicorn, worker pools of fresh
interpreters, asyncio.Runner(loop_factory=...)) bypass the policy; if the
program ends without having run a ferroloop loop, this says so on stderr,
with the way to make that program use ferroloop.

--stats
    Turns on the metrics of every ferroloop loop the program makes in this
    process (Loop.enable_metrics) and, when the program ends, prints to
    stderr a summary of each loop that ran: its duration (made to closed),
    iterations, callbacks, the share of that time spent running callbacks
    (busy) and waiting for events (polling), loop lag (how late timers ran
    after their deadline and how long callbacks waited in the ready queue:
    p50, p99 and max in ms), tasks created, bytes read and written per
    transport kind, connections accepted, and the five slowest callbacks
    with where they were scheduled (file:line, or where a task stood).
    Slow callbacks are also logged as they happen, on asyncio's logger.
    The program's stdout and exit status are unchanged.
--slow-callback-duration=SECONDS
    With --stats: callbacks that run this long or longer are reported as
    slow (default 0.1, asyncio's debug-mode threshold).
"""
USAGE = HELP.split('\n\n')[0]
SLOW_OPTION = '--slow-callback-duration'


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``argv`` (default: the command line) as ``run SCRIPT [ARGS...]``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (['-h'], ['--help']) or argv[:2] in (['run', '-h'], ['run', '--help']):
        print(HELP, end='')
        return 0
    if len(argv) < 2 or argv[0] != 'run':
        print(USAGE, file=sys.stderr)
        return 2
    try:
        stats, rest = _options(argv[1:])
    except ValueError as exc:
        print(f"{exc}\n{USAGE}", file=sys.stderr)
        return 2
    if not rest:
        print(USAGE, file=sys.stderr)
        return 2
    if not rest[0].startswith('-m'):
        return _run(rest[0], rest, is_module=False, stats=stats)
    rest = rest[1:] if rest[0] == '-m' else [rest[0][2:]] + rest[1:]   # '-m mod' or '-mmod'
    if not rest:
        print(f"Argument expected for the -m option\n{USAGE}", file=sys.stderr)
        return 2
    return _run(rest[0], ['-m'] + rest[1:], is_module=True, stats=stats)


def _options(args):
    """run's own options, before the program: the slow-callback threshold
    when --stats is given (else None), and the arguments left."""
    stats, slow = False, None
    while args and args[0].startswith('--'):
        option, eq, value = args[0].partition('=')
        if option == '--stats' and not eq:
            stats, args = True, args[1:]
        elif option == SLOW_OPTION:
            if not eq:
                if len(args) < 2:
                    raise ValueError(f'{SLOW_OPTION} expects a number of seconds')
                value, args = args[1], args[1:]
            args = args[1:]
            try:
                slow = float(value)
            except ValueError:
                raise ValueError(f'{SLOW_OPTION} expects a number of seconds, not {value!r}') from None
            if not slow >= 0:
                raise ValueError(f'{SLOW_OPTION} must be 0 or more, not {value}')
        else:
            raise ValueError(f'unknown option {args[0]!r}')
    if slow is not None and not stats:
        raise ValueError(f'{SLOW_OPTION} goes with --stats')
    return (0.1 if slow is None else slow) if stats else None, args


def _run(target, args, is_module, stats=None):
    import ferroloop
    from . import _usage_report

    main_module = types.ModuleType('__main__')
    main_module.__builtins__ = __builtins__
    if is_module:
        sys.argv = args   # runpy replaces the '-m' with the module's file, as python -m does
    else:
        path = target if os.path.isabs(target) else os.path.join(os.getcwd(), target)
        try:
            if not os.path.isdir(path):
                with open(path, 'rb'):
                    pass
        except OSError as exc:
            print(f"{sys.executable}: can't open file {path!r}: [Errno {exc.errno}] {exc.strerror}",
                  file=sys.stderr)
            return 2
        sys.argv = args
        sys.path[0] = os.path.dirname(os.path.realpath(path))

    _trim_tracebacks_to(main_module.__dict__)
    ferroloop.install()
    _usage_report.watch(target)
    if stats is not None:
        from . import _run_stats
        _run_stats.watch(stats)
    sys.modules['__main__'] = main_module
    if is_module:
        # python -m's own steps: the module's spec, code and globals, run in sys.modules['__main__'].
        runpy._run_module_as_main(target, alter_argv=True)
    elif os.path.isdir(path) or zipfile.is_zipfile(path):
        # A directory or zip with a __main__.py: python puts it first on the path.
        sys.path[0] = path
        runpy._run_module_as_main('__main__', alter_argv=False)
    else:
        _run_script(path, main_module)
    return 0


def _run_script(path, module):
    """What ``python SCRIPT`` does: the file's code in ``__main__``, named by its absolute path."""
    from importlib.machinery import SourceFileLoader
    module.__file__ = path
    if sys.version_info < (3, 15):
        module.__cached__ = None   # gone from modules in 3.15
    module.__loader__ = SourceFileLoader('__main__', path)
    module.__spec__ = None
    module.__package__ = None
    with open(path, 'rb') as f:
        source = f.read()
    code = compile(source, path, 'exec', dont_inherit=True)
    exec(code, module.__dict__)


def _trim_tracebacks_to(main_globals):
    """Uncaught exceptions show the frames ``python SCRIPT`` would: from the program's first on."""
    previous = sys.excepthook

    def excepthook(kind, value, tb):
        first = tb
        while first is not None and first.tb_frame.f_globals is not main_globals:
            first = first.tb_next
        # None when the program's code never ran (a SyntaxError): as python, no frames.
        if value is not None:
            value.__traceback__ = first
        previous(kind, value, first)

    sys.excepthook = excepthook


if __name__ == '__main__':
    sys.exit(main())

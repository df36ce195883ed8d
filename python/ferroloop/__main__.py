"""``python -m ferroloop run SCRIPT|-m MODULE [ARGS...]``: an unmodified asyncio program on ferroloop."""

import os
import runpy
import sys
import types
import zipfile
from collections.abc import Sequence

HELP = """\
usage: python -m ferroloop run SCRIPT [ARGS...]
       python -m ferroloop run -m MODULE [ARGS...]

Runs a Python program as 'python SCRIPT' or 'python -m MODULE' would, with
ferroloop's policy installed: asyncio.run(), asyncio.new_event_loop() and
asyncio.get_event_loop() give ferroloop loops.

Programs that build their loop themselves (uvicorn, worker pools of fresh
interpreters, asyncio.Runner(loop_factory=...)) bypass the policy; if the
program ends without having run a ferroloop loop, this says so on stderr,
with the way to make that program use ferroloop.
"""
USAGE = HELP.split('\n\n')[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``argv`` (default: the command line) as ``run SCRIPT [ARGS...]``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (['-h'], ['--help']) or argv[:2] in (['run', '-h'], ['run', '--help']):
        print(HELP, end='')
        return 0
    if len(argv) < 2 or argv[0] != 'run':
        print(USAGE, file=sys.stderr)
        return 2
    rest = argv[1:]
    if not rest[0].startswith('-m'):
        return _run(rest[0], rest, is_module=False)
    rest = rest[1:] if rest[0] == '-m' else [rest[0][2:]] + rest[1:]   # '-m mod' or '-mmod'
    if not rest:
        print(f"Argument expected for the -m option\n{USAGE}", file=sys.stderr)
        return 2
    return _run(rest[0], ['-m'] + rest[1:], is_module=True)


def _run(target, args, is_module):
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

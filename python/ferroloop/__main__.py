"""``python -m ferroloop run SCRIPT [ARGS...]``: an unmodified asyncio program on ferroloop."""

import os
import runpy
import sys
from collections.abc import Sequence

USAGE = "usage: python -m ferroloop run SCRIPT [ARGS...]"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``argv`` (default: the command line) as ``run SCRIPT [ARGS...]``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) < 2 or argv[0] != 'run':
        print(USAGE, file=sys.stderr)
        return 2
    script = argv[1]
    if not os.path.exists(script):
        print(f"python -m ferroloop: can't open file {script!r}", file=sys.stderr)
        return 2
    import ferroloop
    ferroloop.install()
    sys.argv = argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name='__main__')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""``python -m ferroloop run SCRIPT [ARGS...]``: an unmodified asyncio program on ferroloop."""

import os
import runpy
import sys

USAGE = "usage: python -m ferroloop run SCRIPT [ARGS...]"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
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

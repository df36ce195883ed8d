"""Turns the harness's raw measurements into the markdown results table.

Medians, not means: on a shared machine the noise is one-sided (another
process steals the CPU, never gives extra), and the median ignores the worst
rounds without hand-picking. Each cell also shows +-half the min..max range
relative to the median, so a noisy row is visible as such.
"""

import statistics

C_CEILING = 'C'     # the key the harness uses for the C epoll server


def si(x):
    """1234567 -> '1.23M'."""
    for factor, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
        if x >= factor:
            return f'{x / factor:.3g}{suffix}'
    return f'{x:.3g}'


def cell(samples):
    if not samples:
        return 'FAIL'
    med = statistics.median(samples)
    if len(samples) < 2 or med == 0:
        return si(med)
    spread = (max(samples) - min(samples)) / 2 / med
    return f'{si(med)} ±{spread:.0%}'


def median_or_none(samples):
    return statistics.median(samples) if samples else None


def spread(samples):
    """Half the min..max range, relative to the median."""
    med = statistics.median(samples)
    return (max(samples) - min(samples)) / 2 / med if med else 0.0


def ratio_cell(target, baseline):
    """``1.23x``, flagged as noise when the rounds spread wider than the difference shown."""
    if not target or not baseline:
        return '-'
    ratio = statistics.median(target) / statistics.median(baseline)
    flag = ' (noise)' if abs(ratio - 1) < spread(target) + spread(baseline) else ''
    return f'{ratio:.2f}x{flag}'


def baselines(loops, target):
    return [b for b in ('uvloop', 'asyncio', 'zuvloop') if b in loops and b != target]


def table(benchmarks, labels, loops, results, failed, ceilings=None):
    """The markdown table.

    benchmarks: names in row order; labels: name -> row label; loops: column
    order; results: (bench, loop) -> [rate, ...] of successful runs; failed:
    set of (bench, loop) that failed at least once (a failed cell is marked
    even when other rounds succeeded, so a flaky failure is not hidden);
    ceilings: bench -> the key under which the C ceiling's rates are in
    results, as (key, C_CEILING) -- several rows may share one (default: the
    echo_* rows, each under its own name).
    """
    if ceilings is None:
        ceilings = {b: b for b in benchmarks if b.startswith('echo')}
    target = 'ferroloop' if 'ferroloop' in loops else loops[-1]
    others = baselines(loops, target)
    has_echo = any(b in ceilings for b in benchmarks)

    head = ['benchmark'] + list(loops) + [f'{target}/{b}' for b in others]
    if has_echo:
        head.append(f'{target} / C ceiling')
    rows = [head, ['---'] + ['---:'] * (len(head) - 1)]

    for bench in benchmarks:
        row = [labels[bench]]
        for loop in loops:
            c = cell(results.get((bench, loop), []))
            if (bench, loop) in failed and c != 'FAIL':
                c += ' (some runs FAILED)'
            row.append(c)
        mine = results.get((bench, target), [])
        row += [ratio_cell(mine, results.get((bench, b), [])) for b in others]
        if has_echo:
            t = median_or_none(mine)
            c = median_or_none(results.get((ceilings[bench], C_CEILING), [])) \
                if bench in ceilings else None
            if t and c:
                row.append(f'{t / c:.0%} (C: {si(c)})')
            elif c:
                row.append(f'- (C: {si(c)})')
            else:
                row.append('')
        rows.append(row)
    return '\n'.join('| ' + ' | '.join(r) + ' |' for r in rows)


def ratios(benchmarks, loops, results, baseline):
    """bench -> ferroloop's median over baseline's, for the rows both measured."""
    target = 'ferroloop' if 'ferroloop' in loops else loops[-1]
    out = {}
    for bench in benchmarks:
        t, b = results.get((bench, target)), results.get((bench, baseline))
        if t and b:
            out[bench] = statistics.median(t) / statistics.median(b)
    return out


def summary(benchmarks, loops, results):
    """One line: the geometric mean of the ratios to each other loop, and the rows below 1.0x."""
    target = 'ferroloop' if 'ferroloop' in loops else loops[-1]
    parts = []
    for baseline in baselines(loops, target):
        r = ratios(benchmarks, loops, results, baseline)
        if r:
            below = sorted(b for b, x in r.items() if x < 1.0)
            parts.append(f'{target}/{baseline}: geometric mean {statistics.geometric_mean(r.values()):.2f}x '
                         f'over {len(r)} rows, {len(below)} below 1.0x'
                         + (f' ({", ".join(below)})' if below else ''))
    return '; '.join(parts)


def chart(path, benchmarks, labels, loops, results):
    """A PNG of each loop's rate relative to uvloop (or the first loop), row by row."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    reference = 'uvloop' if 'uvloop' in loops else loops[0]
    rows = [b for b in benchmarks if results.get((b, reference))]
    shown = [l for l in loops if l != reference]
    fig, ax = pyplot.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    height = 0.8 / max(len(shown), 1)
    for i, loop in enumerate(shown):
        values = [statistics.median(results[(b, loop)]) / statistics.median(results[(b, reference)])
                  if results.get((b, loop)) else 0 for b in rows]
        ax.barh([y + i * height for y in range(len(rows))], values, height, label=loop)
    ax.axvline(1.0, color='black', linewidth=0.8)
    ax.set_yticks([y + height * (len(shown) - 1) / 2 for y in range(len(rows))])
    ax.set_yticklabels([labels[b] for b in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale('log')
    ax.set_xlabel(f'rate relative to {reference} (log scale; right of the line is faster)')
    ax.legend(loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)

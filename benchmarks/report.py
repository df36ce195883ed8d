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
    baseline = next((b for b in ('uvloop', 'asyncio') if b in loops and b != target), None)
    has_echo = any(b in ceilings for b in benchmarks)

    head = ['benchmark'] + list(loops)
    if baseline:
        head.append(f'{target}/{baseline}')
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
        t = median_or_none(results.get((bench, target), []))
        if baseline:
            b = median_or_none(results.get((bench, baseline), []))
            row.append(f'{t / b:.2f}x' if t and b else '-')
        if has_echo:
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

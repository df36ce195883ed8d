"""Runs CPython's own ``test.test_asyncio`` against ferroloop.

``python -m compat`` (or ``python compat/run.py``) is the entry point; see
``compat/README.md``. The parts:

- ``run.py``     the driver: one subprocess per test module, timeouts, results
                 JSON, the expected-pass list and the summary;
- ``worker.py``  what runs inside each subprocess: installs the loop under test,
                 runs the module's tests and streams every outcome to a file;
- ``adapt.py``   the few places where a test module hard-codes the stdlib loop
                 and the harness puts the loop under test in its stead;
- ``out_of_scope.txt``   tests of the stdlib loop's own insides, not counted;
- ``expected-3.11.txt``  tests that pass on ferroloop and must keep passing.
"""

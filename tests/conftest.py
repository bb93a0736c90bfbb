"""In CI nothing may skip for want of an extra.

The README's test command needs no extra: the tests that compare with PyTorch and transformers,
load the real all-MiniLM-L6-v2, or drive a headless Chromium, skip cleanly without them. `.ci/run`
installs every extra and sets NUMPRETRAIN_REQUIRE_EXTRAS=1, and then such a skip is a failure: a
broken install, or a test that stopped finding its package, cannot pass CI by skipping.
"""

import os

import pytest

REQUIRE_EXTRAS = os.environ.get("NUMPRETRAIN_REQUIRE_EXTRAS") == "1"
# importorskip's reason, the MiniLM marker's, the browser tests' (tests/test_explore_browser.py), the MPI
# tests' when mpi4py came without a launcher
EXTRA_SKIPS = ("could not import", "needs the model package", "needs a browser", "needs mpiexec")


def skip_reason(report):
    return report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_EXTRAS and report.skipped and any(words in skip_reason(report) for words in EXTRA_SKIPS):
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} skipped ({skip_reason(report)}), but NUMPRETRAIN_REQUIRE_EXTRAS=1 "
                           "says every extra is installed (.ci/run)")

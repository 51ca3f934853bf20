"""Problem summaries and repeated data messages are logged once per dataset and process."""

import logging

from fx_d2.data.problems import ProblemLog, log_once, reported_problems


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno >= logging.INFO]


def test_same_problems_warn_once_then_debug(caplog):
    def read(name, extra=0):
        problems = ProblemLog(name)
        problems.add("missing_mask", "a.png", "no mask")
        for i in range(extra):
            problems.add("bad_row", f"x.csv:{i}", "empty")
        problems.report()

    with caplog.at_level(logging.DEBUG, logger="fx_d2.data.problems"):
        read("fx_once_test")
        read("fx_once_test")  # the same dataset read again (an evaluation)
        read("fx_once_test", extra=2)  # new problems: warned again
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and "bad_row: 2" in warned[1].getMessage()
    assert any("(as before)" in r.getMessage() for r in caplog.records if r.levelno == 10)
    assert reported_problems()["fx_once_test"] == {"missing_mask": 1, "bad_row": 2}
    ProblemLog("fx_clean_test").report()
    assert "fx_clean_test" not in reported_problems()


def test_log_once(caplog):
    log = logging.getLogger("fx_d2.test_log_once")
    with caplog.at_level(logging.DEBUG, logger="fx_d2.test_log_once"):
        for _ in range(3):
            log_once(log, logging.INFO, "%s: %d DICOMs have no row", "/data/siim", 1)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["/data/siim: 1 DICOMs have no row"]
    assert len(caplog.records) == 3

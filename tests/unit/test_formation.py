"""Reading a formation spec for the connection budget (console/formation.py)."""
import pytest

from console import formation


def test_a_formation_is_read_per_process_kind():
    assert formation.parse("web=2, worker=4x8,scheduler=1") == {"web": (2, None), "worker": (4, 8), "scheduler": (1, None)}


@pytest.mark.parametrize("spec, message", [
    ("web=2,worker=4x", "expected web=N"), ("web=1,web=2", "web named twice"), ("web=2x3", "only worker"),
    ("", "empty formation"), ("worker=1x0", "at least 1"), ("cron=1", "expected web=N"),
])
def test_a_formation_that_cannot_be_read_is_refused(spec, message):
    with pytest.raises(formation.FormationError, match=message):
        formation.parse(spec)

"""Which idle consumer answers an enqueue wake-up (storage/wakeups.py): one job, one claim."""
from storage import wakeups


def test_one_job_wakes_exactly_one_of_the_peers_at_once_and_the_others_stand_in_staggered():
    for ticket in range(0, 40):
        wakes = [wakeups.read(f"t{ticket}:1", (index, 5), claim_batch=50) for index in range(5)]
        assert [w.kind for w in wakes].count("now") == 1
        delays = sorted(w.delay for w in wakes if w.kind == "later")
        assert delays == [wakeups.STAGGER * k for k in (1, 2, 3, 4)]  # one stand-in at a time
        assert {w.ticket for w in wakes} == {str(ticket)}


def test_which_peer_answers_rotates_with_the_ticket():
    first = {next(i for i in range(4) if wakeups.read(f"t{t}:1", (i, 4), 50).kind == "now") for t in range(8)}
    assert first == {0, 1, 2, 3}


def test_a_bulk_enqueue_wakes_one_consumer_per_claim_batch():
    wakes = [wakeups.read("t7:120", (index, 6), claim_batch=50) for index in range(6)]
    assert [w.kind for w in wakes].count("now") == 3  # ceil(120 / 50)
    wakes = [wakeups.read("t7:100000", (index, 6), claim_batch=50) for index in range(6)]
    assert all(w.kind == "now" for w in wakes)


def test_other_payloads_and_unknown_places_wake_at_once():
    assert wakeups.read("", (1, 3), 50).kind == "now"  # SQL enqueue, redrive, unique inserts
    assert wakeups.read('{"queue_name":"default","message_id":"x"}', (1, 3), 50).kind == "now"  # stock dramatiq-pg
    assert wakeups.read("t12:1", None, 50).kind == "now"  # not (yet) among the live workers
    assert wakeups.read("t12:1", (0, 1), 50).kind == "now"  # alone


def test_an_announcement_names_its_ticket():
    taken = wakeups.read(wakeups.announcement("12"), (1, 3), 50)
    assert (taken.kind, taken.ticket) == ("taken", "12")

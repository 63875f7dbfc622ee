"""Property tests (hypothesis): accepted names round-trip through the printed line; rejected ones raise only ValidationError."""

import shlex

from hypothesis import given, settings
from hypothesis import strategies as st

from bridgenet import Bridge, Namespace, ValidationError, VethPair
from bridgenet.model import RenderContext

names = st.one_of(
    st.text(min_size=0, max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=16),
    st.from_regex(r"[a-z][a-z0-9_.-]{0,16}", fullmatch=True),
)


@settings(max_examples=400)
@given(name=names, peer=names, netns=names)
def test_accepted_names_round_trip_and_rejected_raise_validation_error(name, peer, netns):
    try:
        v = VethPair(name, peer, netns=netns, master=None, address="10.201.0.4/24")
        Namespace(netns)
    except ValidationError:
        return  # rejected: the only allowed failure
    for step in v.steps(RenderContext(brings_lo_up={netns: name})):
        for c in step.up + step.down:
            assert tuple(shlex.split(c.shell())) == c.argv
            assert tuple(shlex.split(c.shell(sudo=True))) == ("sudo", *c.argv)


@given(name=names)
def test_bridge_names_round_trip(name):
    try:
        b = Bridge(name)
    except ValidationError as e:
        assert e.field == "name" and e.rule
        return
    assert len(name.encode()) <= 15
    for step in b.steps(RenderContext()):
        for c in step.up:
            assert tuple(shlex.split(c.shell())) == c.argv

"""Two owners never share a key of shared state: a `/` (or a brace) in a tenant or a user
name once made `fanout:events:{a/b/c/m}` the relay stream of both tenant "a/b", user "c"
and tenant "a", user "b/c", and the same two shared one limiter bucket."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.auth import Principal
from service.limits import Limiter, MemoryBackend, RateLimited, load_policy
from service.runs.relay import stream_key

# Each pair: two different owners whose names, joined with "/", read the same.
MEETING_OWNERS = [
    (Principal(user="c", tenant="a/b"), Principal(user="b/c", tenant="a")),
    (Principal(user="x", tenant="a/b/c"), Principal(user="c/x", tenant="a/b")),
]
BRACED_OWNERS = [Principal(user="c}x", tenant="a"), Principal(user="c", tenant="{a}")]


@pytest.mark.parametrize(("one", "other"), MEETING_OWNERS)
def test_two_owners_relay_streams_are_different_keys(one: Principal, other: Principal) -> None:
    assert stream_key(one, "m", 1) != stream_key(other, "m", 1)


@pytest.mark.parametrize("owner", BRACED_OWNERS)
def test_a_relay_key_keeps_one_hash_tag_whatever_the_names(owner: Principal) -> None:
    key = stream_key(owner, "m{1}", 1)
    assert key.count("{") == 1
    assert key.count("}") == 1
    assert key.endswith("}")


# Names as a token may give them: any text, the separators and braces made likely.
NAMES = st.text(alphabet=st.sampled_from("ab/:{}%") | st.characters(), min_size=1, max_size=12)
RUNS = st.tuples(NAMES, NAMES, NAMES, st.integers(1, 3))


@given(one=RUNS, other=RUNS)
def test_any_run_has_a_relay_key_of_its_own_in_one_hash_tag(
    one: tuple[str, str, str, int], other: tuple[str, str, str, int]
) -> None:
    """Each key reads back as the run it was made for (so no two runs share one), and is
    one hash tag whatever the names hold."""

    def key(run: tuple[str, str, str, int]) -> str:
        tenant, user, message_id, version = run
        return stream_key(Principal(user=user, tenant=tenant), message_id, version)

    assert (key(one) == key(other)) == (one == other)
    for run in (one, other):
        tagged = key(run).removeprefix("fanout:events:")
        assert tagged.startswith("{")
        assert tagged.endswith("}")
        inner = tagged[1:-1]
        assert "{" not in inner
        assert "}" not in inner
        *names, version = inner.split("/")
        assert [unquote(name, errors="surrogatepass") for name in names] == list(run[:3])
        assert int(version) == run[3]


@pytest.mark.parametrize(("one", "other"), MEETING_OWNERS)
async def test_two_owners_never_share_a_stream_slot(
    one: Principal, other: Principal, tmp_path: Path
) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text("[default]\nconcurrent_streams = 1\n")
    limiter = Limiter(load_policy(limits), MemoryBackend(), on_error="open")
    held = await limiter.admit(one, "10.0.0.1", anonymous=False, max_tokens=[None])
    with pytest.raises(RateLimited):  # the limit holds for the owner itself...
        await limiter.admit(one, "10.0.0.1", anonymous=False, max_tokens=[None])
    # ...and the other owner has a slot of its own.
    theirs = await limiter.admit(other, "10.0.0.2", anonymous=False, max_tokens=[None])
    await theirs.settle(None)
    await held.settle(None)

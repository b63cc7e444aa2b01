"""A name inside a key of shared state (the relay's Redis Streams, the limiter's buckets):
percent-encoded, so that no separator a name may hold (`/`, `:`, `{`, `}`) can make two
owners' keys the same, or move a key out of its Redis Cluster hash tag (`{...}`).

    f"fanout:events:{{{key_part(tenant)}/{key_part(user)}/{key_part(message_id)}}}"

Ids the API accepts are printable ASCII already, but tenants and users also come from
tokens, which say what they like. "alice" stays "alice"; "a/b" is "a%2Fb".
"""

from __future__ import annotations

from urllib.parse import quote


def key_part(name: str) -> str:
    # surrogatepass: a lone surrogate (a JSON "\ud800") still has one encoding of its own.
    return quote(name, safe="", errors="surrogatepass")

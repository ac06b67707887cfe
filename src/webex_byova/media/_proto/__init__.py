"""Generated protobuf/gRPC stubs for package ``com.cisco.wcc.ccai.media.v1``.

Do not edit: regenerate with ``python scripts/gen_proto.py``.

The stubs load on every protobuf major from 5.29 on (5, 6 and 7): protoc's own runtime pin is
removed by the generator and this floor is checked instead.
"""

from google.protobuf import __version__ as _protobuf_version

MIN_PROTOBUF = (5, 29)


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


if _release(_protobuf_version) < MIN_PROTOBUF:  # pragma: no cover - depends on the install
    raise ImportError(
        f"webex_byova's media server needs protobuf>=5.29, found {_protobuf_version}; "
        "run: pip install -U 'protobuf>=5.29'"
    )

"""Generated protobuf/gRPC stubs for package ``com.cisco.wcc.ccai.media.v1``.

Do not edit: regenerate with ``python scripts/gen_proto.py``.
"""

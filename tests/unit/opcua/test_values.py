"""Instances never hold a null value: every variable starts with a value its DataType can encode."""

from __future__ import annotations

import pytest
from asyncua import Server, ua
from asyncua.ua.ua_binary import variant_to_binary

from sdk.opcua.ids import node_id, qname
from sdk.opcua.shelf import init_server
from sdk.opcua.values import NO_DATE, default_variant, new_instance


def test_no_date_is_the_datetime_encoded_as_zero() -> None:
    assert ua.datetime_to_win_epoch(NO_DATE) == 0  # OPC 10000-6 5.2.2.5: the "no date" DateTime
    assert variant_to_binary(ua.Variant(NO_DATE, ua.VariantType.DateTime)) == b"\x0d" + bytes(8)


@pytest.mark.parametrize("kind", [k for k in ua.VariantType if 1 <= k.value <= 21])
def test_every_built_in_default_encodes(kind: ua.VariantType) -> None:
    for array in (False, True):
        variant = default_variant(kind, array=array)
        assert variant is not None and variant.VariantType is kind
        variant_to_binary(variant)  # raises when asyncua cannot encode it


async def test_a_new_instance_has_no_null_value() -> None:
    server = Server()
    await init_server(server)
    ns = await server.register_namespace("urn:test:values")
    # FileType declares properties without values (Size, Writable, OpenCount, LastModifiedTime...).
    file = await new_instance(
        server.nodes.objects, server.get_node(ua.ObjectIds.FileType), node_id("File", ns), qname("File", ns)
    )
    values: dict[str, ua.DataValue] = {}
    for child in await file.get_children():
        if await child.read_node_class() == ua.NodeClass.Variable:
            values[str((await child.read_browse_name()).Name)] = await child.read_data_value()
    assert {"Size", "Writable", "OpenCount", "LastModifiedTime", "MimeType"} <= set(values)
    for name, dv in values.items():
        assert dv.Value is not None and dv.Value.Value is not None, name
        variant_to_binary(dv.Value)
    modified = values["LastModifiedTime"].Value
    assert modified is not None and modified.Value == NO_DATE
    assert values["Size"].Value == ua.Variant(0, ua.VariantType.UInt64)

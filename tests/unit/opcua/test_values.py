"""Instances never hold a null value: every variable starts with a value its DataType can encode."""

from __future__ import annotations

import pytest
from asyncua import Server, ua
from asyncua.ua.ua_binary import variant_to_binary

from sdk.opcua.ids import node_id, qname
from sdk.opcua.shelf import init_server
from sdk.opcua.values import NO_DATE, default_variant, new_instance, write_own


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


async def test_write_own_writes_as_the_servers_own_write_value_does() -> None:
    server = Server()
    await init_server(server)
    ns = await server.register_namespace("urn:test:values")
    a = await server.nodes.objects.add_variable(node_id("A", ns), qname("A", ns), ua.Variant("", ua.VariantType.String))
    b = await server.nodes.objects.add_variable(node_id("B", ns), qname("B", ns), ua.Variant("", ua.VariantType.String))
    changes: list[ua.DataValue] = []
    server.iserver.aspace.add_datachange_callback(b.nodeid, ua.AttributeIds.Value, lambda _, dv: changes.append(dv))
    await a.write_value(ua.Variant("x", ua.VariantType.String))
    await write_own(server, b.nodeid, ua.Variant("x", ua.VariantType.String))
    written, expected = await b.read_data_value(), await a.read_data_value()
    assert written.Value == expected.Value == ua.Variant("x", ua.VariantType.String)
    assert written.StatusCode == expected.StatusCode
    assert written.SourceTimestamp is not None and written.ServerTimestamp is not None  # as write_value stamps
    assert expected.SourceTimestamp is not None and expected.ServerTimestamp is not None
    assert changes and changes[-1].Value == written.Value  # subscriptions see it
    server.set_force_server_timestamp(False)
    await write_own(server, b.nodeid, ua.Variant("y", ua.VariantType.String))
    assert (await b.read_data_value()).ServerTimestamp is None
    with pytest.raises(ua.UaStatusCodeError) as mismatch:  # the DataType checked, as a Write is
        await write_own(server, b.nodeid, ua.Variant(1.5, ua.VariantType.Double))
    assert mismatch.value.code == ua.StatusCodes.BadTypeMismatch
    with pytest.raises(ua.UaStatusCodeError) as unknown:
        await write_own(server, node_id("Nowhere", ns), ua.Variant("x", ua.VariantType.String))
    assert unknown.value.code == ua.StatusCodes.BadNodeIdUnknown

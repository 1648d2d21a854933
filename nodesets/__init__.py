"""OPC UA information models (NodeSet2 XML) that the gateway and the edge node load.

- ``Opc.Ua.Di.NodeSet2.xml``: OPC 10000-100 Devices (DI) 1.05, the OPC Foundation's
  published file as node-opcua-nodesets ships it, license header kept.
- ``ModelLine.NodeSet2.xml``: ModelLine's own types, generated from ``model.py``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nodesets.ids import DI_URI, MODELLINE_URI

if TYPE_CHECKING:  # the OPC UA stack is needed only by servers, not by what imports the identifiers
    from asyncua import Server, ua

HERE = Path(__file__).parent
DI_NODESET = HERE / "Opc.Ua.Di.NodeSet2.xml"
MODELLINE_NODESET = HERE / "ModelLine.NodeSet2.xml"
_UANODESET_NS = "http://opcfoundation.org/UA/2011/03/UANodeSet.xsd"


@dataclass(frozen=True)
class Namespaces:
    """Namespace indexes of the loaded models in one server."""

    di: int
    modelline: int


def without_design_tool_only(path: Path) -> tuple[str, int]:
    """The NodeSet text without nodes marked DesignToolOnly="true", and how many were left out.

    NodeSet 1.05 marks nodes that exist only for design tools with DesignToolOnly
    (OPC 10000-6 F.3, UANode attributes). The DI 1.05 file holds nine: the
    parentless FunctionalGroupType templates Configuration, Tuning, Maintenance,
    Diagnostics, Statistics, Status, Operational, OperationCounters and
    Identification, which nothing references. asyncua 2.1 does not know the
    attribute and refuses a parentless Object with BadParentNodeIdInvalid, which
    stops the whole import. Servers are not meant to hold these nodes, so they are
    dropped before the import.
    """
    ET.register_namespace("", _UANODESET_NS)
    root = ET.fromstring(path.read_text(encoding="utf-8"))
    dropped = [el for el in list(root) if el.get("DesignToolOnly") == "true"]
    for el in dropped:
        root.remove(el)
    return ET.tostring(root, encoding="unicode"), len(dropped)


async def load(server: Server, added: list[ua.NodeId] | None = None) -> Namespaces:
    """Import DI and ModelLine's types into a server (before it starts); returns their namespaces.
    ``added`` receives the NodeIds of the nodes imported, in the order they were added."""
    di_xml, _ = without_design_tool_only(DI_NODESET)
    nodes = await server.import_xml(xmlstring=di_xml)
    nodes += await server.import_xml(str(MODELLINE_NODESET))
    if added is not None:
        added.extend(nodes)
    return Namespaces(
        di=await server.get_namespace_index(DI_URI),
        modelline=await server.get_namespace_index(MODELLINE_URI),
    )

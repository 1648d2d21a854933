// node-opcua reads a whole address space the way a generic browser (UaExpert) does when a user
// clicks through it: an independent check that every node of a server reads for any client.
//
//   node crawl.mjs <endpoint> [maxNodes]
//
// 1. Browses from the Objects and the Types folder, following every hierarchical forward reference
//    (OPC 10000-4 5.8.2 Browse, HierarchicalReferences with subtypes), de-duplicated by NodeId, and
//    asks each node for its HasTypeDefinition in the same Browse requests.
// 2. Reads every attribute that applies to each node's NodeClass (OPC 10000-3 Table 17 ff.),
//    many nodes and attributes to a Read request, with TimestampsToReturn Both.
// 3. Reports as problems: a ServiceFault or other request-level error (the culprit is then found by
//    reading node by node, attribute by attribute); a Bad status on a mandatory attribute, or on an
//    optional one other than BadAttributeIdInvalid; a server fault status (BadInternalError...) on a
//    Value; a Value whose Variant type does not match the node's DataType (resolved through HasSubtype
//    to its built-in type, OPC 10000-6 5.1.2: an Enumeration is an Int32 on the wire, a Structure an
//    ExtensionObject, abstract BaseDataType / Number / Integer / UInteger accept what they cover) or
//    its ValueRank (OPC 10000-3 5.6.2); a null Value with a Good status (counted, not failed, in
//    type declarations, whose Values are optional templates); an attribute of the wrong built-in
//    type; a browse result whose TypeDefinition, NodeClass or BrowseName differs from the target's
//    own.
// Prints a JSON summary on stdout; exits 1 when there are problems.
import {
  AttributeIds,
  BrowseDirection,
  DataType,
  NodeClass,
  VariantArrayType,
  resolveNodeId,
} from "node-opcua-client";
import { connect, dataTypes, fail } from "./common.mjs";

const [endpoint, maxNodesArg] = process.argv.slice(2);
if (!endpoint) fail("usage: node crawl.mjs <endpoint> [maxNodes]");
const MAX_NODES = Number(maxNodesArg || 30000);
const BATCH_READ = 1000; // ReadValueIds per Read request unless the server's MaxNodesPerRead is lower
const BATCH_BROWSE = 200; // nodes per Browse request (two BrowseDescriptions each)

const HIERARCHICAL = resolveNodeId("ns=0;i=33");
const HAS_TYPE_DEFINITION = resolveNodeId("ns=0;i=40");
const HAS_SUBTYPE = "ns=0;i=45";

// Attributes by NodeClass (OPC 10000-3 5.2 ff.): [attribute, mandatory, expected built-in type].
const A = AttributeIds;
const COMMON = [
  [A.NodeId, true, DataType.NodeId],
  [A.NodeClass, true, DataType.Int32],
  [A.BrowseName, true, DataType.QualifiedName],
  [A.DisplayName, true, DataType.LocalizedText],
  [A.Description, false, DataType.LocalizedText],
  [A.WriteMask, false, DataType.UInt32],
  [A.UserWriteMask, false, DataType.UInt32],
  [A.RolePermissions, false, DataType.ExtensionObject],
  [A.UserRolePermissions, false, DataType.ExtensionObject],
  [A.AccessRestrictions, false, DataType.UInt16],
];
const VARIABLE_PARTS = [
  [A.DataType, true, DataType.NodeId],
  [A.ValueRank, true, DataType.Int32],
  [A.ArrayDimensions, false, DataType.UInt32],
];
const BY_CLASS = {
  [NodeClass.Object]: [[A.EventNotifier, true, DataType.Byte]],
  [NodeClass.Variable]: [
    [A.Value, true, null],
    ...VARIABLE_PARTS,
    [A.AccessLevel, true, DataType.Byte],
    [A.UserAccessLevel, true, DataType.Byte],
    [A.MinimumSamplingInterval, false, DataType.Double],
    [A.Historizing, true, DataType.Boolean],
    [A.AccessLevelEx, false, DataType.UInt32],
  ],
  [NodeClass.Method]: [
    [A.Executable, true, DataType.Boolean],
    [A.UserExecutable, true, DataType.Boolean],
  ],
  [NodeClass.ObjectType]: [[A.IsAbstract, true, DataType.Boolean]],
  [NodeClass.VariableType]: [[A.Value, false, null], ...VARIABLE_PARTS, [A.IsAbstract, true, DataType.Boolean]],
  [NodeClass.ReferenceType]: [
    [A.IsAbstract, true, DataType.Boolean],
    [A.Symmetric, true, DataType.Boolean],
    [A.InverseName, false, DataType.LocalizedText],
  ],
  [NodeClass.DataType]: [
    [A.IsAbstract, true, DataType.Boolean],
    [A.DataTypeDefinition, false, DataType.ExtensionObject],
  ],
  [NodeClass.View]: [
    [A.ContainsNoLoops, true, DataType.Boolean],
    [A.EventNotifier, true, DataType.Byte],
  ],
};
const ATTRIBUTE_NAMES = Object.fromEntries(Object.entries(AttributeIds).map(([k, v]) => [v, k]));
// Status codes that say the server failed, not that the data is bad: never acceptable on a Value.
const SERVER_FAULTS = new Set(
  ["BadInternalError", "BadUnexpectedError", "BadOutOfMemory", "BadEncodingError", "BadEncodingLimitsExceeded",
    "BadAttributeIdInvalid", "BadNodeIdUnknown", "BadNodeIdInvalid", "BadDataEncodingInvalid"],
);
const problems = [];
const problem = (kind, node, detail, attribute) => {
  problems.push({ kind, nodeId: node?.id, path: node?.path, attribute: ATTRIBUTE_NAMES[attribute], detail });
};
const key = (nodeId) => nodeId.toString();

const { client, session } = await connect(endpoint);
const operationLimit = async (id) => {
  const dv = await session.read({ nodeId: `ns=0;i=${id}`, attributeId: A.Value });
  return dv.statusCode.isGood() && dv.value.value > 0 ? dv.value.value : Infinity;
};
const readBatch = Math.min(BATCH_READ, await operationLimit(11705)); // MaxNodesPerRead
const browseBatch = Math.min(BATCH_BROWSE, Math.floor((await operationLimit(11710)) / 2)); // MaxNodesPerBrowse
let readRequests = 0;
let browseRequests = 0;

// --- 1. browse -------------------------------------------------------------------------------------

const nodes = new Map(); // key -> { id, nodeId, path, nodeClass, browseName, seenAs: [{from, typeDefinition, ...}] }
const supertypes = new Map(); // DataType key -> its supertype's key (from HasSubtype seen while browsing)
let truncated = false;
const start = [["ObjectsFolder", "ns=0;i=85"], ["TypesFolder", "ns=0;i=86"]];
let frontier = [];
for (const [name, id] of start) {
  const nodeId = resolveNodeId(id);
  const node = { id: key(nodeId), nodeId, path: `/${name}`, seenAs: [] };
  nodes.set(node.id, node);
  frontier.push(node);
}

async function browseAll(descriptions) {
  browseRequests++;
  let results;
  try {
    results = await session.browse(descriptions);
  } catch (err) {
    problem("browseRequestFailed", null, String(err.message || err));
    return descriptions.map(() => []);
  }
  const all = [];
  for (let i = 0; i < results.length; i++) {
    let result = results[i];
    const references = [];
    for (;;) {
      if (result.statusCode.isNotGood()) {
        problem("browseFailed", { id: key(descriptions[i].nodeId) }, result.statusCode.name);
        break;
      }
      references.push(...(result.references || []));
      if (!result.continuationPoint || result.continuationPoint.length === 0) break;
      browseRequests++;
      [result] = await session.browseNext([result.continuationPoint], false);
    }
    all.push(references);
  }
  return all;
}

const typeDefinitionOf = new Map(); // key -> [typeDefinition keys] from HasTypeDefinition
while (frontier.length > 0) {
  const next = [];
  for (let i = 0; i < frontier.length; i += browseBatch) {
    const batch = frontier.slice(i, i + browseBatch);
    const descriptions = batch.flatMap((node) => [
      { nodeId: node.nodeId, referenceTypeId: HIERARCHICAL, includeSubtypes: true,
        browseDirection: BrowseDirection.Forward, nodeClassMask: 0, resultMask: 0x3f },
      { nodeId: node.nodeId, referenceTypeId: HAS_TYPE_DEFINITION, includeSubtypes: false,
        browseDirection: BrowseDirection.Forward, nodeClassMask: 0, resultMask: 0x3f },
    ]);
    const results = await browseAll(descriptions);
    batch.forEach((node, j) => {
      typeDefinitionOf.set(node.id, results[2 * j + 1].map((r) => key(r.nodeId)));
      for (const ref of results[2 * j]) {
        if (ref.nodeId.serverIndex) continue; // another server's node
        const target = key(ref.nodeId);
        if (key(ref.referenceTypeId) === HAS_SUBTYPE) supertypes.set(target, node.id);
        let child = nodes.get(target);
        if (!child) {
          if (nodes.size >= MAX_NODES) {
            truncated = true;
            continue;
          }
          child = { id: target, nodeId: resolveNodeId(target), path: `${node.path}/${ref.browseName.toString()}`, seenAs: [] };
          nodes.set(target, child);
          next.push(child);
        }
        child.seenAs.push({
          from: node.id,
          nodeClass: ref.nodeClass,
          browseName: ref.browseName.toString(),
          typeDefinition: key(ref.typeDefinition),
        });
      }
    });
  }
  frontier = next;
}
if (truncated) problem("truncated", null, `more than ${MAX_NODES} nodes; raise maxNodes`);

// --- 2. read ---------------------------------------------------------------------------------------

async function read(items) {
  readRequests++;
  return session.read(items.map(([node, attributeId]) => ({ nodeId: node.nodeId, attributeId })), 0);
}

// Reads in batches; a batch whose request fails is read again node by node, then attribute by
// attribute, so that the report names the attribute that breaks a whole request.
async function readAll(items, size = readBatch) {
  const out = new Array(items.length);
  for (let i = 0; i < items.length; i += size) {
    const batch = items.slice(i, i + size);
    try {
      (await read(batch)).forEach((dv, j) => { out[i + j] = dv; });
    } catch (err) {
      if (batch.length === 1) {
        problem("readRequestFailed", batch[0][0], String(err.message || err).split("\n")[0], batch[0][1]);
        out[i] = null;
        continue;
      }
      const smaller = await readAll(batch, Math.max(1, Math.floor(batch.length / 8)));
      smaller.forEach((dv, j) => { out[i + j] = dv; });
    }
  }
  return out;
}

// Pass 1: NodeClass of every node (the browse result says it too, but the node itself decides).
const all = [...nodes.values()];
const classes = await readAll(all.map((node) => [node, A.NodeClass]));
all.forEach((node, i) => {
  const dv = classes[i];
  if (dv && dv.statusCode.isGood()) node.nodeClass = dv.value.value;
  else if (dv) problem("badStatus", node, dv.statusCode.name, A.NodeClass);
});

// Pass 2: every attribute of every node, as a browser shows them.
const items = [];
for (const node of all) {
  if (node.nodeClass === undefined) continue;
  for (const [attributeId, mandatory, type] of [...COMMON, ...(BY_CLASS[node.nodeClass] || [])]) {
    items.push([node, attributeId, mandatory, type]);
  }
}
const values = await readAll(items);
for (let i = 0; i < items.length; i++) {
  const [node, attributeId] = items[i];
  node.attributes = node.attributes || {};
  node.attributes[attributeId] = values[i];
}

// --- 3. check --------------------------------------------------------------------------------------

const { builtInOf, accepts } = dataTypes(session, supertypes);

function rankAccepts(valueRank, arrayType) {
  const scalar = arrayType === VariantArrayType.Scalar;
  if (valueRank === -1) return scalar; // Scalar
  if (valueRank === -2) return true; // Any
  if (valueRank === -3) return scalar || arrayType === VariantArrayType.Array; // ScalarOrOneDimension
  if (valueRank === 0) return !scalar; // OneOrMoreDimensions
  if (valueRank === 1) return arrayType === VariantArrayType.Array;
  return arrayType === VariantArrayType.Matrix;
}

const typeName = (t) => DataType[t] ?? String(t);
let badValues = 0;
let nullDeclarations = 0; // Variables in types with a Good null Value
for (const [node, attributeId, mandatory, type] of items) {
  const dv = node.attributes[attributeId];
  if (!dv) continue; // the request failed: reported already
  const status = dv.statusCode;
  if (attributeId === A.Value) {
    if (status.isNotGood() && SERVER_FAULTS.has(status.name) && (mandatory || status.name !== "BadAttributeIdInvalid")) {
      problem("badStatus", node, status.name, attributeId);
    } else if (status.isNotGood()) {
      badValues++;
    }
    continue; // its type is checked below, against DataType and ValueRank
  }
  if (status.isNotGood()) {
    if (mandatory || status.name !== "BadAttributeIdInvalid") problem("badStatus", node, status.name, attributeId);
    continue;
  }
  const variant = dv.value;
  if (variant.dataType === DataType.Null) {
    // A scalar Variable has no ArrayDimensions; a null there is how servers say so.
    if (attributeId === A.ArrayDimensions || !mandatory) continue;
    problem("nullAttribute", node, "Good status with a null value", attributeId);
  } else if (variant.dataType !== type) {
    problem("attributeType", node, `${typeName(variant.dataType)}, expected ${typeName(type)}`, attributeId);
  }
}

for (const node of all) {
  const attrs = node.attributes || {};
  if (node.nodeClass === NodeClass.Variable || node.nodeClass === NodeClass.VariableType) {
    const dv = attrs[A.Value];
    const dataType = attrs[A.DataType];
    const valueRank = attrs[A.ValueRank];
    if (!dv || !dataType?.statusCode.isGood() || dv.statusCode.isNotGood()) continue;
    const variant = dv.value;
    if (variant.dataType === DataType.Null) {
      // An instance's Good Value must be a value of its DataType. Instance declarations in types are
      // templates (a null Value there says "no default"): those are counted, not failed.
      if (node.nodeClass === NodeClass.VariableType) continue;
      if (node.path.startsWith("/TypesFolder/")) nullDeclarations++;
      else problem("nullValue", node, "Good status with a null Variant", A.Value);
      continue;
    }
    const declared = key(dataType.value.value);
    const builtIn = await builtInOf(declared);
    if (builtIn === null) {
      problem("unknownDataType", node, `DataType ${declared} does not lead to a built-in type`, A.DataType);
    } else if (!accepts(builtIn, variant.dataType)) {
      problem("valueType", node, `${typeName(variant.dataType)} in a Variable of DataType ${declared}`, A.Value);
    }
    if (valueRank?.statusCode.isGood() && !rankAccepts(valueRank.value.value, variant.arrayType)) {
      const shape = VariantArrayType[variant.arrayType];
      problem("valueRank", node, `${shape} value with ValueRank ${valueRank.value.value}`, A.Value);
    }
  }
  // Each browse result that led here must describe the node as it is.
  const ownTypes = typeDefinitionOf.get(node.id) || [];
  const typed = node.nodeClass === NodeClass.Object || node.nodeClass === NodeClass.Variable;
  if (typed && ownTypes.length !== 1) {
    problem("typeDefinitionCount", node, `${ownTypes.length} HasTypeDefinition references`);
  }
  for (const seen of node.seenAs) {
    const expected = typed ? ownTypes[0] : "ns=0;i=0";
    if (typed && ownTypes.length === 1 && seen.typeDefinition !== expected) {
      problem("browseTypeDefinition", node, `browse from ${seen.from} says ${seen.typeDefinition}, node has ${expected}`);
    }
    if (node.nodeClass !== undefined && seen.nodeClass !== node.nodeClass) {
      problem("browseNodeClass", node, `browse from ${seen.from} says ${NodeClass[seen.nodeClass]}`);
    }
    const name = attrs[A.BrowseName];
    if (name?.statusCode.isGood() && name.value.value.toString() !== seen.browseName) {
      problem("browseName", node, `browse from ${seen.from} says ${seen.browseName}, node has ${name.value.value}`);
    }
  }
}

await session.close();
await client.disconnect();
const byClass = {};
for (const node of all) {
  const name = NodeClass[node.nodeClass] ?? "Unknown";
  byClass[name] = (byClass[name] || 0) + 1;
}
const summary = JSON.stringify({
  endpoint, nodes: nodes.size, byClass, attributesRead: items.length, readRequests, browseRequests,
  badValues, nullDeclarations, truncated, problems, paths: all.filter((n) => n.nodeId.namespace !== 0).map((n) => n.path),
});
// Exit only once the summary is written: a pipe takes 64 KiB at a time.
process.stdout.write(`${summary}\n`, () => process.exit(problems.length ? 1 : 0));

// An independent DI software update client (OPC 10000-100 section 8) that knows nothing of
// ModelLine: it finds DeviceSet/<device>/<component> with a SoftwareUpdate AddIn, reads every
// property of CurrentVersion, PendingVersion and FallbackVersion in ONE Read request (as a DI
// client or a browser showing the versions does), transfers a package to PendingVersion and
// installs it (Cached-Loading, 8.3.3), reading the versions again after each step.
//
//   node di_update.mjs <endpoint> <package file>
//
// Which properties to read comes from the server's own SoftwareVersionType (DI 8.4.11): every
// property it declares that the version object has. Each must read Good, with a Value of the
// property's DataType. Prints a JSON summary (the versions before, after the transfer and after
// the install); exits non-zero on any failure.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { AttributeIds, BrowseDirection, DataType, StatusCodes, VariantArrayType } from "node-opcua-client";
import { call, connect, dataTypes, fail, findSoftwareUpdate, resolve, transferToPending } from "./common.mjs";

const [endpoint, packagePath] = process.argv.slice(2);
const DI = "http://opcfoundation.org/UA/DI/";
const SOFTWARE_VERSION_TYPE = 212; // DI SoftwareVersionType, numeric id in the DI namespace
const VERSIONS = ["CurrentVersion", "PendingVersion", "FallbackVersion"];

const { client, session } = await connect(endpoint);
const di = (await session.readNamespaceArray()).indexOf(DI);
if (di < 0) fail("the server has no DI namespace");
const types = dataTypes(session);

const found = await findSoftwareUpdate(session, di);
if (!found) fail("no device with a SoftwareUpdate AddIn under DeviceSet");
const { device, slot, update } = found;
const loading = await resolve(session, update, `/${di}:Loading`);

const properties = async (nodeId) =>
  (await session.browse({ nodeId, referenceTypeId: "ns=0;i=46", browseDirection: BrowseDirection.Forward }))
    .references.map((r) => ({ name: r.browseName.name, nodeId: r.nodeId }));
const declared = new Set((await properties(`ns=${di};i=${SOFTWARE_VERSION_TYPE}`)).map((p) => p.name));
const versionProps = {};
for (const version of VERSIONS) {
  const nodeId = await resolve(session, loading, `/${di}:${version}`);
  versionProps[version] = (await properties(nodeId)).filter((p) => declared.has(p.name));
}

function plain(variant) {
  const value = variant.value;
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value)) return value.toString("hex");
  if (value && typeof value === "object" && "text" in value) return value.text ?? "";
  if (Array.isArray(value) || ArrayBuffer.isView(value)) return Array.from(value);
  return value;
}

// Value and DataType of every version property, all in one Read request.
let readRequests = 0;
async function readVersions(step) {
  const items = [];
  for (const version of VERSIONS) {
    for (const p of versionProps[version]) {
      items.push({ version, name: p.name, nodeId: p.nodeId });
    }
  }
  const nodesToRead = items.flatMap((item) => [
    { nodeId: item.nodeId, attributeId: AttributeIds.Value },
    { nodeId: item.nodeId, attributeId: AttributeIds.DataType },
  ]);
  readRequests++;
  let results;
  try {
    results = await session.read(nodesToRead, 0);
  } catch (err) {
    fail(`${step}: the one Read of ${items.length} version properties failed: ${err.message}`);
  }
  const out = Object.fromEntries(VERSIONS.map((v) => [v, {}]));
  for (let i = 0; i < items.length; i++) {
    const { version, name } = items[i];
    const [value, dataType] = [results[2 * i], results[2 * i + 1]];
    if (value.statusCode !== StatusCodes.Good) fail(`${step}: ${version}/${name} reads ${value.statusCode.name}`);
    const declaredType = dataType.value.value.toString();
    const builtIn = await types.builtInOf(declaredType);
    if (value.value.dataType === DataType.Null || !types.accepts(builtIn, value.value.dataType)) {
      fail(`${step}: ${version}/${name} holds ${DataType[value.value.dataType]}, its DataType is ${declaredType}`);
    }
    const array = value.value.arrayType !== VariantArrayType.Scalar;
    out[version][name] = array ? Array.from(value.value.value ?? []) : plain(value.value);
  }
  return out;
}

const before = await readVersions("before");

// Transfer to PendingVersion (Cached-Loading, 8.3.3).
const data = readFileSync(packagePath);
await transferToPending(session, loading, di, data);
const afterTransfer = await readVersions("after transfer");

// InstallSoftwarePackage (8.4.9) with the Pending version's identity and the SHA-256 of the file.
const pending = afterTransfer.PendingVersion;
const installation = await resolve(session, update, `/${di}:Installation`);
await call(session, installation, "InstallSoftwarePackage", di, [
  { dataType: DataType.String, value: pending.ManufacturerUri },
  { dataType: DataType.String, value: pending.SoftwareRevision },
  { dataType: DataType.String, arrayType: VariantArrayType.Array, value: [] },
  { dataType: DataType.ByteString, value: createHash("sha256").update(data).digest() },
]);
const state = await resolve(session, installation, "/CurrentState");
for (let i = 0; ; i++) {
  const text = (await session.read({ nodeId: state, attributeId: AttributeIds.Value })).value.value.text;
  if (text === "Idle") break;
  if (text === "Error" || i > 600) fail(`installation ended in ${text}`);
  await new Promise((r) => setTimeout(r, 100));
}
// Confirm when the server waits for it (ConfirmationStateMachineType, 8.4.10).
const confirmation = await resolve(session, update, `/${di}:Confirmation`);
const confirmState = await resolve(session, confirmation, "/CurrentState");
const waiting = (await session.read({ nodeId: confirmState, attributeId: AttributeIds.Value })).value.value.text;
if (waiting === "WaitingForConfirm") await call(session, confirmation, "Confirm", di, []);
const afterInstall = await readVersions("after install");

await session.close();
await client.disconnect();
const propertyNames = Object.fromEntries(VERSIONS.map((v) => [v, versionProps[v].map((p) => p.name).sort()]));
console.log(JSON.stringify({
  device, slot, declared: [...declared].sort(), properties: propertyNames, readRequests, before, afterTransfer,
  afterInstall,
}));

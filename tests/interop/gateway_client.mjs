// node-opcua as an independent client of the ModelLine gateway (Model Manager).
//
//   node gateway_client.mjs <endpoint> <package.mlpkg> <device id> <binding.json>
//
// Browses ModelManager, reads the device's State, uploads the package through ModelManager/Upload
// (GenerateFileForWrite, Write, CloseAndCommit), calls Deploy, then downloads the stored package from
// Models/<name>/<version>/Package and prints a JSON summary (the last line). Exits non-zero on failure.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { AttributeIds, BrowseDirection, DataType, StatusCodes } from "node-opcua-client";
import { connect, fail, resolve } from "./common.mjs";

const [endpoint, packagePath, deviceId, bindingPath] = process.argv.slice(2);
const ML = "http://modelline.io/UA/";

async function call(session, objectId, methodId, inputArguments) {
  const result = await session.call({ objectId, methodId, inputArguments });
  if (result.statusCode !== StatusCodes.Good) fail(`call failed: ${result.statusCode.toString()}`);
  return result.outputArguments.map((a) => a.value);
}

const { client, session } = await connect(endpoint);
const ml = (await session.readNamespaceArray()).indexOf(ML);
const manager = await resolve(session, "ObjectsFolder", `/${ml}:ModelManager`);
const browse = async (nodeId) => (await session.browse({
  nodeId, browseDirection: BrowseDirection.Forward, referenceTypeId: "HierarchicalReferences", includeSubtypes: true,
})).references;

// 1. Browse the manager and read the device's State.
const folders = (await browse(manager)).map((r) => r.browseName.name).sort();
const devices = await resolve(session, manager, `/${ml}:Devices`);
const device = (await browse(devices)).find((r) => r.browseName.name === deviceId);
if (!device) fail(`device ${deviceId} not found`);
const stateNode = await resolve(session, device.nodeId, `/${ml}:State`);
const deviceState = (await session.read({ nodeId: stateNode, attributeId: AttributeIds.Value })).value.value;

// 2. Upload the package (OPC 10000-20 TemporaryFileTransferType).
const data = readFileSync(packagePath);
const upload = await resolve(session, manager, `/${ml}:Upload`);
const [fileNodeId, handle] = await call(session, upload, await resolve(session, upload, "/GenerateFileForWrite"), [
  { dataType: DataType.Null },
]);
const maxByteString = (await session.read({ nodeId: "ns=0;i=12911", attributeId: AttributeIds.Value })).value.value;
const chunk = Math.min(maxByteString || 65536, 1 << 20);
const writeId = await resolve(session, fileNodeId, "/Write");
for (let start = 0; start < data.length; start += chunk) {
  await call(session, fileNodeId, writeId, [
    { dataType: DataType.UInt32, value: handle },
    { dataType: DataType.ByteString, value: data.subarray(start, start + chunk) },
  ]);
}
await call(session, upload, await resolve(session, upload, "/CloseAndCommit"), [{ dataType: DataType.UInt32, value: handle }]);

// 3. Deploy it to the device.
const models = await resolve(session, manager, `/${ml}:Models`);
const model = (await browse(models))[0];
const version = (await browse(model.nodeId)).find((r) => /^\d+\.\d+/.test(r.browseName.name));
const [deploymentId] = await call(session, manager, await resolve(session, manager, `/${ml}:Deploy`), [
  { dataType: DataType.String, value: model.browseName.name },
  { dataType: DataType.String, value: version.browseName.name },
  { dataType: DataType.String, arrayType: 1, value: [deviceId] },
  { dataType: DataType.String, value: JSON.stringify({ binding: JSON.parse(readFileSync(bindingPath, "utf8")) }) },
]);

// 4. Download the stored package (FileType: Open, Read until empty, Close).
const packageNode = await resolve(session, version.nodeId, `/${ml}:Package`);
const [readHandle] = await call(session, packageNode, await resolve(session, packageNode, "/Open"), [
  { dataType: DataType.Byte, value: 1 },
]);
const readId = await resolve(session, packageNode, "/Read");
const parts = [];
for (;;) {
  const [block] = await call(session, packageNode, readId, [
    { dataType: DataType.UInt32, value: readHandle },
    { dataType: DataType.Int32, value: chunk },
  ]);
  if (!block || block.length === 0) break;
  parts.push(block);
}
await call(session, packageNode, await resolve(session, packageNode, "/Close"), [
  { dataType: DataType.UInt32, value: readHandle },
]);
const downloaded = createHash("sha256").update(Buffer.concat(parts)).digest("hex");
const sha256Node = await resolve(session, version.nodeId, `/${ml}:Sha256`);
const stored = (await session.read({ nodeId: sha256Node, attributeId: AttributeIds.Value })).value.value;

await session.close();
await client.disconnect();
console.log(JSON.stringify({
  folders, deviceState, model: model.browseName.name, version: version.browseName.name, deploymentId,
  downloaded, stored, uploaded: createHash("sha256").update(data).digest("hex"),
}));

// node-opcua as an independent DI software update client of a ModelLine edge node.
//
//   node edge_install.mjs <endpoint> <package.mlpkg> <binding.json>
//
// Browses DeviceSet for a device with a SoftwareUpdate AddIn, reads CurrentVersion, installs the
// package the standard way (GenerateFileForWrite, Write, CloseAndCommit, InstallSoftwarePackage with
// the SHA-256, Confirm), sets the pipeline binding, subscribes to the first prediction output and
// waits for Good updates. Progress lines go to stdout as "EVENT <name>"; the last line is a JSON
// summary. Exits non-zero on any failure.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  AttributeIds,
  BrowseDirection,
  ClientMonitoredItem,
  ClientSubscription,
  DataType,
  StatusCodes,
  TimestampsToReturn,
} from "node-opcua-client";
import { call, connect, fail, findSoftwareUpdate, resolve, transferToPending } from "./common.mjs";

const [endpoint, packagePath, bindingPath] = process.argv.slice(2);
const DI = "http://opcfoundation.org/UA/DI/";
const ML = "http://modelline.io/UA/";

async function value(session, nodeId) {
  const dv = await session.read({ nodeId, attributeId: AttributeIds.Value });
  return dv.value.value;
}

const { client, session } = await connect(endpoint);
const namespaces = await session.readNamespaceArray();
const di = namespaces.indexOf(DI);
const ml = namespaces.indexOf(ML);
if (di < 0 || ml < 0) fail(`namespaces missing: ${namespaces.join(", ")}`);

// 1. Browse DeviceSet for a device whose component has a SoftwareUpdate AddIn.
const found = await findSoftwareUpdate(session, di);
if (!found) fail("no device with a SoftwareUpdate AddIn under DeviceSet");
const { device, slot, update } = found;
console.log(`EVENT found ${device}/${slot}`);

const loading = await resolve(session, update, `/${di}:Loading`);
const revision = (which) => resolve(session, loading, `/${di}:${which}/${di}:SoftwareRevision`).then((n) => value(session, n));
const currentBefore = await revision("CurrentVersion");

// 2. Transfer to PendingVersion (OPC 10000-100 Cached-Loading, OPC 10000-20 TemporaryFileTransferType).
const data = readFileSync(packagePath);
await transferToPending(session, loading, di, data);
const pending = await resolve(session, loading, `/${di}:PendingVersion`);
const pendingUri = await value(session, await resolve(session, pending, `/${di}:ManufacturerUri`));
const pendingRevision = await value(session, await resolve(session, pending, `/${di}:SoftwareRevision`));
console.log(`EVENT pending ${pendingRevision}`);

// 3. ConfirmationTimeout, InstallSoftwarePackage with the hash, wait for Idle, Confirm.
const confirmation = await resolve(session, update, `/${di}:Confirmation`);
const timeoutNode = await resolve(session, confirmation, `/${di}:ConfirmationTimeout`);
const written = await session.write({
  nodeId: timeoutNode, attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 30000 } },
});
if (written !== StatusCodes.Good) fail(`write ConfirmationTimeout: ${written.toString()}`);
const installation = await resolve(session, update, `/${di}:Installation`);
const hash = createHash("sha256").update(data).digest();
await call(session, installation, "InstallSoftwarePackage", di, [
  { dataType: DataType.String, value: pendingUri },
  { dataType: DataType.String, value: pendingRevision },
  { dataType: DataType.String, arrayType: 1, value: [] },
  { dataType: DataType.ByteString, value: hash },
]);
const installState = await resolve(session, installation, "/CurrentState");
for (let i = 0; ; i++) {
  const state = (await value(session, installState)).text;
  if (state === "Idle") break;
  if (state === "Error" || i > 600) fail(`installation ended in ${state}`);
  await new Promise((r) => setTimeout(r, 100));
}
await call(session, confirmation, "Confirm", di, []);
const currentAfter = await revision("CurrentVersion");
console.log(`EVENT installed ${currentAfter}`);

// 4. Bind the pipeline's inputs and subscribe to its first output.
const pipeline = await resolve(session, "ObjectsFolder", `/${ml}:InferenceServer/${ml}:Pipelines`);
const pipelines = (await session.browse({ nodeId: pipeline, browseDirection: BrowseDirection.Forward })).references;
const pipelineNode = pipelines.find((r) => r.browseName.name === slot).nodeId;
await call(session, pipelineNode, "SetBinding", ml, [{ dataType: DataType.String, value: readFileSync(bindingPath, "utf8") }]);
const outputs = await resolve(session, pipelineNode, `/${ml}:Outputs`);
const outputRefs = (await session.browse({ nodeId: outputs, browseDirection: BrowseDirection.Forward })).references;
const output = outputRefs.find((r) => r.browseName.name === "anomaly_score");

const subscription = ClientSubscription.create(session, {
  requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 200, publishingEnabled: true,
});
const notifications = [];
const item = ClientMonitoredItem.create(subscription, { nodeId: output.nodeId, attributeId: AttributeIds.Value },
  { samplingInterval: 0, queueSize: 10, discardOldest: true }, TimestampsToReturn.Both);
const enough = new Promise((resolveEnough) => {
  item.on("changed", (dv) => {
    notifications.push({ status: dv.statusCode.name, value: dv.value.value, source: dv.sourceTimestamp?.toISOString() });
    if (notifications.filter((n) => n.status === "Good").length >= 3) resolveEnough();
  });
});
await new Promise((r) => subscription.on("started", r));
console.log("EVENT subscribed");
const timer = setTimeout(() => fail(`too few Good updates: ${JSON.stringify(notifications)}`), 30000);
await enough;
clearTimeout(timer);
await subscription.terminate();
await session.close();
await client.disconnect();
console.log(JSON.stringify({ device, slot, currentBefore, pending: pendingRevision, currentAfter, notifications }));

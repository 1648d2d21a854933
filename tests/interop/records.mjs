// A third-party collector in node-opcua: waits for a RecordsReadyEventType event on InferenceServer/Records,
// fetches the stream with FetchRecords in pages after the newest sequence it holds, acknowledges them with
// AcknowledgeRecords, and prints what it got as JSON.
//
//   node records.mjs <endpoint> <stream> <at least this many records>
import { AttributeIds, ClientMonitoredItem, ClientSubscription, DataType, TimestampsToReturn,
  VariantArrayType, constructEventFilter } from "node-opcua-client";
import { call, connect, fail, resolve } from "./common.mjs";

const [endpoint, stream, wantedText] = process.argv.slice(2);
const wanted = Number(wantedText);
const uint64 = (v) => (Array.isArray(v) ? v[0] * 2 ** 32 + v[1] : Number(v)); // node-opcua's UInt64 is [high, low]
const { client, session } = await connect(endpoint);
const ml = (await session.readNamespaceArray()).indexOf("http://modelline.io/UA/");
if (ml < 0) fail("no ModelLine namespace");
const records = await resolve(session, "ObjectsFolder", `/${ml}:InferenceServer/${ml}:Records`);
const eventType = await resolve(session, "ns=0;i=2041", `/${ml}:RecordsReadyEventType`);
const subscription = ClientSubscription.create(session, {
  requestedPublishingInterval: 100, requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 200, publishingEnabled: true,
});
const filter = constructEventFilter(["EventType", `${ml}:Stream`, `${ml}:LastSequence`]);
const item = ClientMonitoredItem.create(subscription, { nodeId: records, attributeId: AttributeIds.EventNotifier },
  { queueSize: 100, filter, discardOldest: true }, TimestampsToReturn.Both);
console.log("EVENT subscribed");
const event = await new Promise((done, reject) => {
  const timer = setTimeout(() => reject(new Error("no RecordsReady event")), 30000);
  item.on("changed", (fields) => {
    const [type, eventStream, last] = fields.map((f) => f.value);
    if (type.toString() !== eventType.toString() || eventStream !== stream || !(uint64(last) >= wanted)) return;
    clearTimeout(timer);
    done({ stream: eventStream, lastSequence: uint64(last) });
  });
});
await subscription.terminate();
const sequences = [];
let queueId = "";
let after = 0;
for (;;) {
  const [id, page, , more] = (await call(session, records, "FetchRecords", ml, [
    { dataType: DataType.String, value: stream },
    { dataType: DataType.UInt64, arrayType: VariantArrayType.Scalar, value: [0, after] },
    { dataType: DataType.UInt32, value: 10 },
  ])).map((v) => v.value);
  queueId = id;
  for (const text of page ?? []) sequences.push(JSON.parse(text).sequence);
  if (sequences.length) after = sequences[sequences.length - 1];
  if (!more) break;
}
const [removed] = (await call(session, records, "AcknowledgeRecords", ml, [
  { dataType: DataType.String, value: stream },
  { dataType: DataType.String, value: queueId },
  { dataType: DataType.UInt64, arrayType: VariantArrayType.Scalar, value: [0, after] },
])).map((v) => v.value);
await session.close();
await client.disconnect();
console.log(JSON.stringify({ event, queueId, sequences, removed: uint64(removed) }));

// A security monitor written with node-opcua: subscribe to the AuditEvents of the Server object (OPC 10000-5
// 6.4.3ff), try to read the audit trail as an anonymous client (refused: it needs the Engineer role) and wait for
// the AuditUpdateMethodEventType that records the refusal. Prints one JSON summary; exits 1 on a surprise.
//
//   node audit_events.mjs <endpoint>
import {
  AttributeIds, ClientMonitoredItem, DataType, TimestampsToReturn, VariantArrayType, constructEventFilter,
} from "node-opcua-client";
import { connect, fail, resolve } from "./common.mjs";

const [endpoint] = process.argv.slice(2);
const FIELDS = [
  "EventType", "SourceName", "Message", "Severity", "Time", "ActionTimeStamp", "Status", "ServerId",
  "ClientAuditEntryId", "ClientUserId", "StatusCodeId",
];
const AUDIT_UPDATE_METHOD = "ns=0;i=2127";

function plain(variant) {
  const x = variant?.value;
  if (x === null || x === undefined) return null;
  if (x instanceof Date) return x.toISOString();
  if (typeof x === "object" && "text" in x) return x.text;
  if (typeof x === "object" && typeof x.toString === "function") return x.toString();
  return x;
}

const { client, session } = await connect(endpoint);
const namespaces = (await session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value })).value.value;
const ml = namespaces.indexOf("http://modelline.io/UA/");
if (ml < 0) fail(`no ModelLine namespace in ${namespaces}`);
const audit = await resolve(session, "ObjectsFolder", `/${ml}:Audit`);
const fetch = await resolve(session, "ObjectsFolder", `/${ml}:Audit.${ml}:FetchAuditRecords`);

const subscription = await session.createSubscription2({
  requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 200, publishingEnabled: true,
});
const events = [];
const item = ClientMonitoredItem.create(
  subscription,
  { nodeId: "i=2253", attributeId: AttributeIds.EventNotifier },
  { samplingInterval: 0, queueSize: 100, discardOldest: false, filter: constructEventFilter(FIELDS) },
  TimestampsToReturn.Both,
);
item.on("changed", (fields) => events.push(Object.fromEntries(FIELDS.map((name, i) => [name, plain(fields[i])]))));
await new Promise((ok, reject) => {
  item.once("initialized", ok);
  item.once("err", (message) => reject(new Error(`event monitored item refused: ${message}`)));
});

const result = await session.call({
  objectId: audit,
  methodId: fetch,
  inputArguments: [
    { dataType: DataType.String, value: "" },
    { dataType: DataType.UInt64, arrayType: VariantArrayType.Scalar, value: [0, 0] },
    { dataType: DataType.UInt32, value: 10 },
  ],
});
const deadline = Date.now() + 10000;
let event;
while (!(event = events.find((e) => e.EventType === AUDIT_UPDATE_METHOD && String(e.Message).startsWith("fetch audit records refused")))) {
  if (Date.now() > deadline) fail(`no AuditEvent of the refusal within 10 s: ${JSON.stringify(events, null, 1)}`);
  await new Promise((ok) => setTimeout(ok, 100));
}
console.log(JSON.stringify({ callStatus: result.statusCode.name, event }));
await subscription.terminate();
await session.close();
await client.disconnect();

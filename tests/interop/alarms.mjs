// A SCADA alarm list and trend view, written with node-opcua's client API: subscribe to alarm events on the
// Server object, ConditionRefresh, Acknowledge and Confirm with the EventId shown, HistoryRead of a variable
// and of the Server object's events. Prints one JSON summary; exits 1 with a message on the first surprise.
//
//   node alarms.mjs <endpoint> <user> <password> <conditionId> <historizedNodeId> <startISO> <endISO>
import {
  AttributeIds, ClientMonitoredItem, DataType, HistoryReadRequest, OPCUAClient, ReadEventDetails, TimestampsToReturn,
  UserTokenType, constructEventFilter,
} from "node-opcua-client";
import { clientOptions, fail } from "./common.mjs";

const [endpoint, user, password, conditionId, historized, startIso, endIso] = process.argv.slice(2);
const FIELDS = [
  "EventId", "EventType", "SourceNode", "SourceName", "Time", "ReceiveTime", "Message", "Severity", "ConditionName",
  "BranchId", "Retain", "ActiveState", "ActiveState.Id", "AckedState", "AckedState.Id", "ConfirmedState",
  "ConfirmedState.Id", "EnabledState", "EnabledState.Id", "Quality", "LastSeverity", "Comment", "ConditionId",
];
const REFRESH_START = "ns=0;i=2787";
const REFRESH_END = "ns=0;i=2788";

function plain(variant) {
  const x = variant?.value;
  if (x === null || x === undefined) return null;
  if (Buffer.isBuffer(x)) return x.toString("hex");
  if (x instanceof Date) return x.toISOString();
  if (typeof x === "object" && "text" in x) return x.text;
  if (typeof x === "object" && typeof x.toString === "function") return x.toString();
  return x;
}

function asEvent(fields) {
  return Object.fromEntries(FIELDS.map((name, i) => [name, plain(fields[i])]));
}

const client = OPCUAClient.create(await clientOptions(endpoint));
await client.connect(endpoint);
const session = await client.createSession({ type: UserTokenType.UserName, userName: user, password });
// Anonymous, an Observer on this server. On its own connection: asyncua serves one session per secure
// channel (the last one activated answers every request on it), so a second session would take over the first.
const observerClient = OPCUAClient.create(await clientOptions(endpoint));
await observerClient.connect(endpoint);
const observer = await observerClient.createSession();

const subscription = await session.createSubscription2({
  requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 200, publishingEnabled: true,
});
const events = [];
const waiting = [];
const item = ClientMonitoredItem.create(
  subscription,
  { nodeId: "i=2253", attributeId: AttributeIds.EventNotifier },
  { samplingInterval: 0, queueSize: 1000, discardOldest: false, filter: constructEventFilter(FIELDS) },
  TimestampsToReturn.Both,
);
item.on("changed", (fields) => {
  events.push(asEvent(fields));
  for (const wake of waiting.splice(0)) wake();
});
await new Promise((resolve, reject) => {
  item.once("initialized", resolve);
  item.once("err", (message) => reject(new Error(`event monitored item refused: ${message}`)));
});

// Resolves with the first event from index `from` on that passes `test`.
async function next(from, test, what) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const found = events.slice(from).findIndex(test);
    if (found >= 0) return { event: events[from + found], index: from + found };
    if (Date.now() > deadline) fail(`no ${what} within 10 s; ${JSON.stringify(summary.statuses)} events: ${JSON.stringify(events, null, 1)}`);
    await new Promise((resolve) => { waiting.push(resolve); setTimeout(resolve, 200); });
  }
}

async function call(who, methodId, args) {
  const result = await who.call({ objectId: conditionId, methodId, inputArguments: args });
  return result.statusCode.name;
}
const eventIdArg = (hex) => ({ dataType: DataType.ByteString, value: Buffer.from(hex, "hex") });
const commentArg = (text) => ({ dataType: DataType.LocalizedText, value: { text } });
const summary = { statuses: {} };

// ConditionRefresh (OPC 10000-9 5.5.7) on the Server object with our subscription id.
const before = events.length;
const refresh = await session.call({
  objectId: "i=2253", methodId: "i=3875", inputArguments: [{ dataType: DataType.UInt32, value: subscription.subscriptionId }],
});
summary.statuses.refresh = refresh.statusCode.name;
const start = await next(before, (e) => e.EventType === REFRESH_START, "RefreshStartEvent");
const end = await next(start.index, (e) => e.EventType === REFRESH_END, "RefreshEndEvent");
summary.replayed = events.slice(start.index + 1, end.index);
const shown = summary.replayed.find((e) => e.ConditionId === conditionId);
if (!shown) fail(`condition ${conditionId} not replayed: ${JSON.stringify(summary.replayed)}`);

// Acknowledge (i=9111) and Confirm (i=9113) called on the condition, as an alarm list does.
summary.statuses.observerAck = await call(observer, "i=9111", [eventIdArg(shown.EventId), commentArg("no")]);
summary.statuses.staleAck = await call(session, "i=9111", [eventIdArg("00".repeat(16)), commentArg("old")]);
const beforeAck = events.length;
summary.statuses.ack = await call(session, "i=9111", [eventIdArg(shown.EventId), commentArg("seen by node-opcua")]);
const acked = await next(beforeAck, (e) => e.ConditionId === conditionId && e["AckedState.Id"] === true, "acked event");
summary.acked = acked.event;
summary.statuses.ackAgain = await call(session, "i=9111", [eventIdArg(acked.event.EventId), commentArg("again")]);
const beforeConfirm = events.length;
summary.statuses.confirm = await call(session, "i=9113", [eventIdArg(acked.event.EventId), commentArg("done")]);
const confirmed = await next(beforeConfirm, (e) => e.ConditionId === conditionId && e["ConfirmedState.Id"] === true,
  "confirmed event");
summary.confirmed = confirmed.event;

// HistoryRead: raw values of the historized variable, and the Server object's events.
const raw = await session.readHistoryValue(historized, new Date(startIso), new Date(endIso));
summary.statuses.historyRaw = raw.statusCode.name;
summary.history = (raw.historyData?.dataValues ?? []).map((dv) => ({ value: dv.value.value,
  source: dv.sourceTimestamp?.toISOString() }));
const eventHistory = await session.historyRead(new HistoryReadRequest({
  historyReadDetails: new ReadEventDetails({
    startTime: new Date(startIso), endTime: new Date(Date.now() + 60000), numValuesPerNode: 0,
    filter: constructEventFilter(FIELDS),
  }),
  nodesToRead: [{ nodeId: "i=2253" }],
  timestampsToReturn: TimestampsToReturn.Both,
}));
const [eventResult] = eventHistory.results;
summary.statuses.historyEvents = eventResult.statusCode.name;
summary.eventHistory = (eventResult.historyData?.events ?? []).map((e) => asEvent(e.eventFields));

await subscription.terminate();
await observer.close();
await observerClient.disconnect();
await session.close();
await client.disconnect();
console.log(JSON.stringify(summary));

// Subscribe to one variable with node-opcua and print the first N Good updates as JSON.
//
//   node subscribe.mjs <endpoint> <nodeId> <count>
import { AttributeIds, ClientMonitoredItem, ClientSubscription, TimestampsToReturn } from "node-opcua-client";
import { connect } from "./common.mjs";

const [endpoint, nodeId, countText] = process.argv.slice(2);
const count = Number(countText);
const { client, session } = await connect(endpoint);
const subscription = ClientSubscription.create(session, {
  requestedPublishingInterval: 100, requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 200, publishingEnabled: true,
});
const updates = [];
const item = ClientMonitoredItem.create(subscription, { nodeId, attributeId: AttributeIds.Value },
  { samplingInterval: 0, queueSize: 10, discardOldest: true }, TimestampsToReturn.Both);
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`only ${updates.length} Good updates`)), 30000);
  item.on("changed", (dv) => {
    if (dv.statusCode.name === "Good") updates.push({ value: dv.value.value, source: dv.sourceTimestamp?.toISOString() });
    if (updates.length >= count) {
      clearTimeout(timer);
      resolve();
    }
  });
});
await subscription.terminate();
await session.close();
await client.disconnect();
console.log(JSON.stringify({ updates }));

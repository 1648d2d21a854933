// What the node-opcua interop scripts share: failing with a message, resolving browse paths,
// and connecting the way an ordinary client does.
import { OPCUAClient, StatusCodes, makeBrowsePath } from "node-opcua-client";

export function fail(message) {
  console.error(message);
  process.exit(1);
}

export async function resolve(session, start, path) {
  const [result] = await session.translateBrowsePath([makeBrowsePath(start, path)]);
  if (result.statusCode !== StatusCodes.Good) fail(`cannot resolve ${path}: ${result.statusCode.toString()}`);
  return result.targets[0].targetId;
}

export async function connect(endpoint) {
  const client = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 3, initialDelay: 200 } });
  await client.connect(endpoint);
  return { client, session: await client.createSession() };
}

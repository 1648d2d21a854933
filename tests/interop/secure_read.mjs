// node-opcua as a SCADA would connect to a ModelLine server: with its own certificate (made by
// node-opcua in PKI_ROOT on first use), Aes256_Sha256_RsaPss SignAndEncrypt, a user name and password;
// reads NODE_ID. Prints one JSON line: { status, value, policy, mode } or { error }; exit 3 when refused.
// usage: node secure_read.mjs ENDPOINT PKI_ROOT USER PASSWORD NODE_ID
import { OPCUACertificateManager } from "node-opcua-certificate-manager";  // a dependency of node-opcua-client
import { AttributeIds, MessageSecurityMode, OPCUAClient, SecurityPolicy, UserTokenType } from "node-opcua-client";

const [endpoint, pkiRoot, userName, password, nodeId] = process.argv.slice(2);
const client = OPCUAClient.create({
  applicationName: "node-opcua interop",
  endpointMustExist: false,
  securityMode: MessageSecurityMode.SignAndEncrypt,
  securityPolicy: SecurityPolicy.Aes256_Sha256_RsaPss,
  clientCertificateManager: new OPCUACertificateManager({ rootFolder: pkiRoot, automaticallyAcceptUnknownCertificate: true }),
  connectionStrategy: { maxRetry: 0 },
});
try {
  await client.connect(endpoint);
  const session = await client.createSession({ type: UserTokenType.UserName, userName, password });
  const dataValue = await session.read({ nodeId, attributeId: AttributeIds.Value });
  console.log(JSON.stringify({
    status: dataValue.statusCode.name, value: dataValue.value.value,
    policy: client.securityPolicy, mode: MessageSecurityMode[client.securityMode],
  }));
  await session.close();
  await client.disconnect();
} catch (err) {
  console.log(JSON.stringify({ error: String(err && err.message ? err.message : err) }));
  await client.disconnect().catch(() => {});
  process.exit(3);
}
